// Strict reader of one .safetensors file (Hugging Face): an 8-byte little-endian header length,
// a JSON header naming each tensor's dtype, shape and byte range, then the tensor bytes. The file
// is memory-mapped; tensors are views into the mapping, never copies.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util/mapped_file.h"

namespace cqkv {

// One tensor of a safetensors file. `dtype` is the file's own name ("F32", "BF16", "I8", ...);
// `shape` is row-major (the last dimension is contiguous); `data` points into the mapping.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;
};

// Headers beyond this are taken as a corrupt file rather than parsed (the reference
// implementation uses the same 100 MB bound).
constexpr uint64_t kMaxSafetensorsHeader = 100u << 20;

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file and kMaxSafetensorsHeader, the
  // header a JSON object of tensors (plus an optional "__metadata__" string map), every dtype
  // known, shape product * element size == byte range, ranges inside the data section, and the
  // ranges tiling the data section with no overlap and no gap. Throws cqkv::Error naming the file
  // and, where one is at fault, the tensor.
  static std::shared_ptr<const SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  // Tensors by name.
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  explicit SafetensorsFile(const std::string& path);  // use Open

 private:
  MappedFile file_;
  std::map<std::string, SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a safetensors dtype name, or 0 when the name is not a safetensors dtype.
int SafetensorsDTypeSize(const std::string& dtype);

}  // namespace cqkv
