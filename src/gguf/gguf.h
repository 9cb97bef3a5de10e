// GGUF v2/v3 reader and writer (the llama.cpp model format): typed metadata, tensor infos and
// memory-mapped tensor data. The reader never copies tensor data; the writer writes a temp file
// and renames it so a failed write never leaves a half-written model behind.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "util/mapped_file.h"
#include "util/tensor.h"

namespace cqkv {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// An array of scalars or strings held compactly (how the reader and the array builders below
// store every array whose elements are not arrays): a file of many tiny elements must not cost
// ~100 bytes of memory per element. Element type: the owning GgufValue's array_type.
struct GgufArray {
  // Numbers and bools: the elements little-endian at their stored width, as in the file.
  // Strings: the contents concatenated; element i is data[ends[i-1], ends[i]).
  std::string data;
  std::vector<uint64_t> ends;  // strings only
};

// One metadata value. Scalars of every integer width are held as int64/uint64, floats as double,
// so callers ask for "an integer" without caring about the stored width; `type` keeps the width
// so a round trip writes the same bytes. Arrays are a GgufArray, or a vector of values for arrays
// of arrays (and for hand-built arrays); array_size()/ArrayElement() read either.
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType array_type = GgufType::kUint32;  // element type when type == kArray
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>, GgufArray>
      value;

  // For type == kArray: the number of elements, and element i as a value of its own (a copy).
  uint64_t array_size() const;
  GgufValue ArrayElement(uint64_t i) const;

  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue U64(uint64_t v);
  static GgufValue F32(float v);
  static GgufValue Bool(bool v);
  static GgufValue Str(std::string v);
  static GgufValue StrArray(const std::vector<std::string>& v);
  static GgufValue F32Array(const std::vector<float>& v);
  static GgufValue I32Array(const std::vector<int32_t>& v);
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGML order: ne[0] is the contiguous (innermost) dimension
  DType type = DType::kF32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
  int64_t n_elements() const;
};

// What parsing a file may cost beyond the mapping itself.
struct GgufLimits {
  // Memory for metadata and tensor infos as held in memory (about their size in the file, plus
  // ~100 bytes per key, tensor and nested array). The largest real vocabularies need ~30 MB.
  uint64_t max_metadata_bytes = uint64_t{512} << 20;
};

class GgufFile {
 public:
  // Maps and parses `path`. Throws cqkv::Error naming the file for: not GGUF (bad magic),
  // unsupported version, truncation anywhere, unknown value or tensor type, duplicate keys or
  // tensor names, tensor names of 64 bytes or more (GGML_MAX_NAME), tensor data offsets other
  // than the running padded size of the tensors before (as llama.cpp requires: no gaps, overlaps
  // or aliases), tensor data beyond the end of the file or bytes after it, metadata over budget.
  static std::unique_ptr<GgufFile> Open(const std::string& path, const GgufLimits& limits = {});

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* Find(const std::string& key) const;
  bool Has(const std::string& key) const { return Find(key) != nullptr; }
  // Typed getters: throw cqkv::Error naming the key and file when missing or of the wrong kind.
  // Integer getters accept any integer width; GetFloat accepts float32/float64/integers.
  std::string GetString(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetFloat(const std::string& key) const;
  bool GetBool(const std::string& key) const;
  std::vector<std::string> GetStringArray(const std::string& key) const;
  std::vector<float> GetFloatArray(const std::string& key) const;
  std::vector<int64_t> GetIntArray(const std::string& key) const;
  // Elements of an array of any type (throws naming the key when missing or not an array).
  uint64_t ArrayLength(const std::string& key) const;
  // Defaults when absent (still throw on wrong type).
  int64_t GetInt(const std::string& key, int64_t def) const;
  double GetFloat(const std::string& key, double def) const;
  bool GetBool(const std::string& key, bool def) const;
  std::string GetString(const std::string& key, const std::string& def) const;

  const GgufTensorInfo* FindTensor(const std::string& name) const;
  const void* TensorData(const GgufTensorInfo& t) const;

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  std::unique_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
};

// Builds a GGUF v3 file. Keys and tensors are written in insertion order.
class GgufWriter {
 public:
  void Set(const std::string& key, GgufValue v);  // replaces an existing key
  // `data` must stay alive until Write; nbytes must match type and shape.
  void AddTensor(const std::string& name, DType type, std::vector<int64_t> ne, const void* data);
  // Writes through an AtomicFile (util/atomic_file.h). Alignment is general.alignment if set,
  // else 32.
  void Write(const std::string& path) const;

 private:
  struct PendingTensor {
    GgufTensorInfo info;
    const void* data;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace cqkv
