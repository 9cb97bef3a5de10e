#include "gguf/gguf.h"

#include <cstring>
#include <iterator>
#include <limits>
#include <type_traits>

#include "gguf/gguf_internal.h"
#include "util/error.h"
#include "util/escape.h"

namespace cqkv {

namespace gguf_internal {

const char* ValueTypeName(GgufType t) {
  static const char* const kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                       "int32",  "float32", "bool",   "string", "array",
                                       "uint64", "int64",   "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool IsSupportedDType(uint32_t id) {
  switch (static_cast<DType>(id)) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
      return true;
  }
  return false;
}

bool IsIntegerType(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

uint64_t TensorBytes(DType type, const std::vector<int64_t>& ne, const std::string& where,
                     const std::string& name) {
  const int64_t bs = DTypeBlockSize(type);
  CQKV_CHECK(!ne.empty() && ne[0] % bs == 0,
             "{}: tensor '{}': first dimension {} is not a multiple of the {} block size {}", where,
             name, ne.empty() ? 0 : ne[0], DTypeName(type), bs);
  uint64_t bytes = static_cast<uint64_t>(ne[0] / bs * DTypeBlockBytes(type));
  constexpr uint64_t kMax = uint64_t{1} << 62;
  for (size_t i = 1; i < ne.size(); ++i) {
    const auto d = static_cast<uint64_t>(ne[i]);
    CQKV_CHECK(d == 0 || bytes <= kMax / d, "{}: tensor '{}': size overflows", where, name);
    bytes *= d;
  }
  return bytes;
}

}  // namespace gguf_internal

namespace {

using gguf_internal::AlignUp;
using gguf_internal::IsIntegerType;
using gguf_internal::IsPowerOfTwo;
using gguf_internal::IsSupportedDType;
using gguf_internal::kMagic;
using gguf_internal::kMaxDims;
using gguf_internal::kMaxNameBytes;
using gguf_internal::ScalarWidth;
using gguf_internal::TensorBytes;
using gguf_internal::ValueTypeName;

constexpr int kMaxArrayNesting = 16;  // deeper nesting is only seen in hostile files

// Names of GGML tensor types, so an unsupported quantisation is reported as e.g. "Q4_K".
const char* GgmlTypeName(uint32_t id) {
  static const char* const kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  if (id < std::size(kNames)) return kNames[id];
  if (id == 34) return "TQ1_0";
  if (id == 35) return "TQ2_0";
  return "unknown";
}

// Bounds-checked little-endian reader over the mapped file. Every failure names the file, what
// was being read and where, so a truncated download is recognisable as such.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* data, uint64_t size, uint64_t budget)
      : path_(path), data_(data), size_(size), budget_(budget) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void Need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      Fail("{}: truncated GGUF file: {} needs {} bytes at offset {} but the file has {} bytes",
           Escaped(path_), what, n, pos_, size_);
    }
  }

  template <typename T>
  T Read(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    Need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string ReadString(const char* what) {
    const auto n = Read<uint64_t>(what);
    Need(n, what);
    Charge(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  void Skip(uint64_t n) { pos_ += n; }

  // Appends `n` raw bytes to `out` (array payloads, copied as stored).
  void ReadBytes(uint64_t n, const char* what, std::string& out) {
    Need(n, what);
    out.append(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
  }

  // Counts `bytes` of memory against the metadata budget before they are allocated.
  void Charge(uint64_t bytes, const char* what) {
    if (bytes > budget_ - used_) {
      Fail(
          "{}: GGUF metadata needs more than the {} MiB memory budget (at the {} at offset {}); "
          "the file is corrupt or hostile",
          Escaped(path_), budget_ >> 20, what, pos_);
    }
    used_ += bytes;
  }

  // A count of items that each take at least `min_item_bytes`: anything larger than the rest of
  // the file could hold is corrupt, and is rejected before it sizes an allocation.
  uint64_t ReadCount(const char* what, uint64_t min_item_bytes) {
    const auto n = Read<uint64_t>(what);
    if (n > remaining() / min_item_bytes) {
      Fail(
          "{}: truncated or corrupt GGUF file: {} is {} at offset {}, more than the remaining {} "
          "bytes can hold",
          Escaped(path_), what, n, pos_ - 8, remaining());
    }
    return n;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t budget_;
  uint64_t used_ = 0;
};

GgufValue ReadValue(Reader& r, GgufType type, const std::string& key, const std::string& path,
                    int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::kUint8:
      v.value = uint64_t{r.Read<uint8_t>("uint8 value")};
      break;
    case GgufType::kInt8:
      v.value = int64_t{r.Read<int8_t>("int8 value")};
      break;
    case GgufType::kUint16:
      v.value = uint64_t{r.Read<uint16_t>("uint16 value")};
      break;
    case GgufType::kInt16:
      v.value = int64_t{r.Read<int16_t>("int16 value")};
      break;
    case GgufType::kUint32:
      v.value = uint64_t{r.Read<uint32_t>("uint32 value")};
      break;
    case GgufType::kInt32:
      v.value = int64_t{r.Read<int32_t>("int32 value")};
      break;
    case GgufType::kUint64:
      v.value = r.Read<uint64_t>("uint64 value");
      break;
    case GgufType::kInt64:
      v.value = r.Read<int64_t>("int64 value");
      break;
    case GgufType::kFloat32:
      v.value = double{r.Read<float>("float32 value")};
      break;
    case GgufType::kFloat64:
      v.value = r.Read<double>("float64 value");
      break;
    case GgufType::kBool:
      v.value = r.Read<uint8_t>("bool value") != 0;
      break;
    case GgufType::kString:
      v.value = r.ReadString("string value");
      break;
    case GgufType::kArray: {
      CQKV_CHECK(depth < kMaxArrayNesting, "{}: metadata key '{}': arrays nested deeper than {}",
                 Escaped(path), Escaped(key), kMaxArrayNesting);
      const auto et = r.Read<uint32_t>("array element type");
      CQKV_CHECK(et <= static_cast<uint32_t>(GgufType::kFloat64),
                 "{}: metadata key '{}': unknown array element type {}", Escaped(path),
                 Escaped(key), et);
      v.array_type = static_cast<GgufType>(et);
      const uint64_t width = ScalarWidth(v.array_type);
      // Every element takes >= 1 byte (numbers: their width, strings: an 8-byte length).
      const uint64_t n = r.ReadCount("array length", width > 0 ? width : 1);
      if (v.array_type == GgufType::kArray) {
        r.Charge(n * sizeof(GgufValue), "nested array");
        std::vector<GgufValue> items;
        items.reserve(n);
        for (uint64_t i = 0; i < n; ++i) {
          items.push_back(ReadValue(r, v.array_type, key, path, depth + 1));
        }
        v.value = std::move(items);
      } else if (v.array_type == GgufType::kString) {
        r.Charge(n * sizeof(uint64_t), "string array");
        GgufArray a;
        a.ends.reserve(n);
        for (uint64_t i = 0; i < n; ++i) {
          const auto len = r.Read<uint64_t>("string length");
          r.Charge(len, "string array element");
          r.ReadBytes(len, "string array element", a.data);
          a.ends.push_back(a.data.size());
        }
        v.value = std::move(a);
      } else {
        r.Charge(n * width, "array");
        GgufArray a;
        r.ReadBytes(n * width, "array", a.data);
        v.value = std::move(a);
      }
      break;
    }
    default:
      Fail("{}: metadata key '{}': unknown value type {} at offset {}", Escaped(path), Escaped(key),
           static_cast<uint32_t>(type), r.pos() - 4);
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GgufFile

std::unique_ptr<GgufFile> GgufFile::Open(const std::string& path, const GgufLimits& limits) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->file_ = std::make_unique<MappedFile>(path);
  const uint64_t size = f->file_->size();
  const std::string name = Escaped(path);
  Reader r(path, f->file_->data(), size, limits.max_metadata_bytes);

  CQKV_CHECK(size >= 4, "{}: not a GGUF file (only {} bytes)", name, size);
  const auto magic = r.Read<uint32_t>("magic");
  CQKV_CHECK(magic == kMagic, "{}: not a GGUF file (bad magic 0x{:08x})", name, magic);
  f->version_ = r.Read<uint32_t>("version");
  CQKV_CHECK(f->version_ != 1,
             "{}: GGUF version 1 is not supported (obsolete format); re-convert the model with a "
             "current llama.cpp",
             name);
  CQKV_CHECK(f->version_ < 0x10000,
             "{}: GGUF version field 0x{:08x} looks byte-swapped: big-endian GGUF files are not "
             "supported",
             name, f->version_);
  CQKV_CHECK(f->version_ == 2 || f->version_ == 3,
             "{}: unsupported GGUF version {} (supported: 2, 3)", name, f->version_);

  // Smallest encodings: a tensor info is 8+4+4+8 bytes plus its name and dims, a key-value
  // pair 8+4 bytes plus its key and value.
  const uint64_t n_tensors = r.Read<uint64_t>("tensor count");
  const uint64_t n_kv = r.ReadCount("metadata key-value count", 13);
  CQKV_CHECK(n_tensors <= r.remaining() / 24,
             "{}: truncated or corrupt GGUF file: tensor count {} is more than the file can hold",
             name, n_tensors);

  r.Charge(n_kv * (sizeof(f->kv_[0]) + 64), "metadata key-value table");
  f->kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.ReadString("metadata key");
    const auto type = r.Read<uint32_t>("metadata value type");
    CQKV_CHECK(type <= static_cast<uint32_t>(GgufType::kFloat64),
               "{}: metadata key '{}': unknown value type {} at offset {}", name, Escaped(key),
               type, r.pos() - 4);
    GgufValue v = ReadValue(r, static_cast<GgufType>(type), key, path, 0);
    CQKV_CHECK(f->kv_index_.emplace(key, f->kv_.size()).second, "{}: duplicate metadata key '{}'",
               name, Escaped(key));
    f->kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = f->Find("general.alignment")) {
    CQKV_CHECK(IsIntegerType(a->type), "{}: general.alignment is {}, expected an integer", name,
               ValueTypeName(a->type));
    const int64_t align = f->GetInt("general.alignment");
    CQKV_CHECK(align > 0 && align <= (1 << 30) && IsPowerOfTwo(static_cast<uint64_t>(align)),
               "{}: general.alignment {} is not a power of two in [1, 2^30]", name, align);
    f->alignment_ = static_cast<uint64_t>(align);
  }

  r.Charge(n_tensors * (sizeof(GgufTensorInfo) + 64), "tensor info table");
  f->tensors_.reserve(n_tensors);
  // Tensor data is packed in info order, each tensor padded to the alignment, as llama.cpp's
  // reader requires: any other offset (a gap, an overlap, two tensors sharing bytes, a type or
  // shape changed in place) would read another tensor's bytes as this one's.
  uint64_t expected_offset = 0;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    const uint64_t name_at = r.pos();
    const auto name_len = r.Read<uint64_t>("tensor name");
    CQKV_CHECK(name_len < kMaxNameBytes,
               "{}: tensor {} at offset {}: name of {} bytes (at most {} allowed)", name, i,
               name_at, name_len, kMaxNameBytes - 1);
    r.Need(name_len, "tensor name");
    t.name.assign(reinterpret_cast<const char*>(f->file_->data() + r.pos()), name_len);
    r.Skip(name_len);
    const std::string tname = Escaped(t.name);
    const auto n_dims = r.Read<uint32_t>("tensor dimension count");
    CQKV_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "{}: tensor '{}': {} dimensions (expected 1..{})",
               name, tname, n_dims, kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = r.Read<uint64_t>("tensor shape");
      CQKV_CHECK(ne <= (uint64_t{1} << 40), "{}: tensor '{}': absurd dimension {} = {}", name,
                 tname, d, ne);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    const auto type = r.Read<uint32_t>("tensor type");
    CQKV_CHECK(IsSupportedDType(type),
               "{}: tensor '{}' has type {} (ggml type id {}), which cqkv does not support "
               "(supported: F32, F16, BF16, Q8_0, Q4_0)",
               name, tname, GgmlTypeName(type), type);
    t.type = static_cast<DType>(type);
    t.offset = r.Read<uint64_t>("tensor data offset");
    CQKV_CHECK(t.offset % f->alignment_ == 0,
               "{}: tensor '{}': data offset {} is not a multiple of the alignment {}", name, tname,
               t.offset, f->alignment_);
    t.nbytes = TensorBytes(t.type, t.ne, name, tname);
    CQKV_CHECK(t.offset == expected_offset,
               "{}: tensor '{}': data offset {} differs from {}, where the tensors before it end "
               "(padded to {}): tensor data overlaps, aliases or has gaps",
               name, tname, t.offset, expected_offset, f->alignment_);
    expected_offset = AlignUp(t.offset + t.nbytes, f->alignment_);
    CQKV_CHECK(f->tensor_index_.emplace(t.name, f->tensors_.size()).second,
               "{}: duplicate tensor name '{}'", name, tname);
    f->tensors_.push_back(std::move(t));
  }

  f->data_offset_ = AlignUp(r.pos(), f->alignment_);
  const uint64_t avail = size > f->data_offset_ ? size - f->data_offset_ : 0;
  for (const auto& t : f->tensors_) {
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      Fail(
          "{}: truncated GGUF file: tensor '{}' ({} bytes at data offset {}) ends beyond the "
          "end of the file ({} bytes of tensor data present)",
          name, Escaped(t.name), t.nbytes, t.offset, avail);
    }
  }
  // Writers pad the last tensor too; anything after that padding is not part of any tensor
  // (e.g. the last tensor's type or shape was shrunk in place).
  CQKV_CHECK(avail <= expected_offset,
             "{}: {} bytes of tensor data, but the tensors account for {}: trailing data after "
             "the last tensor",
             name, avail, expected_offset);
  return f;
}

}  // namespace cqkv
