#include "gguf/gguf.h"

#include <cstring>
#include <iterator>
#include <limits>
#include <type_traits>

#include "gguf/gguf_internal.h"
#include "util/error.h"

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
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kIQ4_NL:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
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

bool IsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}

// Bounds-checked little-endian reader over the mapped file. Every failure names the file, what
// was being read and where, so a truncated download is recognisable as such.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void Need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      Fail("{}: truncated GGUF file: {} needs {} bytes at offset {} but the file has {} bytes",
           path_, what, n, pos_, size_);
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
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // A count of items that each take at least `min_item_bytes`: anything larger than the rest of
  // the file could hold is corrupt, and is rejected before it sizes an allocation.
  uint64_t ReadCount(const char* what, uint64_t min_item_bytes) {
    const auto n = Read<uint64_t>(what);
    if (n > remaining() / min_item_bytes) {
      Fail(
          "{}: truncated or corrupt GGUF file: {} is {} at offset {}, more than the remaining {} "
          "bytes can hold",
          path_, what, n, pos_ - 8, remaining());
    }
    return n;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
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
                 path, key, kMaxArrayNesting);
      const auto et = r.Read<uint32_t>("array element type");
      CQKV_CHECK(et <= static_cast<uint32_t>(GgufType::kFloat64),
                 "{}: metadata key '{}': unknown array element type {}", path, key, et);
      v.array_type = static_cast<GgufType>(et);
      const uint64_t n = r.ReadCount("array length", 1);  // every element takes >= 1 byte
      std::vector<GgufValue> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        items.push_back(ReadValue(r, v.array_type, key, path, depth + 1));
      }
      v.value = std::move(items);
      break;
    }
    default:
      Fail("{}: metadata key '{}': unknown value type {} at offset {}", path, key,
           static_cast<uint32_t>(type), r.pos() - 4);
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GgufValue

GgufValue GgufValue::U32(uint32_t v) { return GgufValue{GgufType::kUint32, {}, uint64_t{v}}; }
GgufValue GgufValue::I32(int32_t v) { return GgufValue{GgufType::kInt32, {}, int64_t{v}}; }
GgufValue GgufValue::U64(uint64_t v) { return GgufValue{GgufType::kUint64, {}, v}; }
GgufValue GgufValue::F32(float v) { return GgufValue{GgufType::kFloat32, {}, double{v}}; }
GgufValue GgufValue::Bool(bool v) { return GgufValue{GgufType::kBool, {}, v}; }
GgufValue GgufValue::Str(std::string v) { return GgufValue{GgufType::kString, {}, std::move(v)}; }

GgufValue GgufValue::StrArray(const std::vector<std::string>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(Str(s));
  return GgufValue{GgufType::kArray, GgufType::kString, std::move(items)};
}

GgufValue GgufValue::F32Array(const std::vector<float>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (float f : v) items.push_back(F32(f));
  return GgufValue{GgufType::kArray, GgufType::kFloat32, std::move(items)};
}

GgufValue GgufValue::I32Array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (int32_t i : v) items.push_back(I32(i));
  return GgufValue{GgufType::kArray, GgufType::kInt32, std::move(items)};
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// GgufFile

std::unique_ptr<GgufFile> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->file_ = std::make_unique<MappedFile>(path);
  const uint64_t size = f->file_->size();
  Reader r(path, f->file_->data(), size);

  CQKV_CHECK(size >= 4, "{}: not a GGUF file (only {} bytes)", path, size);
  const auto magic = r.Read<uint32_t>("magic");
  CQKV_CHECK(magic == kMagic, "{}: not a GGUF file (bad magic 0x{:08x})", path, magic);
  f->version_ = r.Read<uint32_t>("version");
  CQKV_CHECK(f->version_ != 1,
             "{}: GGUF version 1 is not supported (obsolete format); re-convert the model with a "
             "current llama.cpp",
             path);
  CQKV_CHECK(f->version_ < 0x10000,
             "{}: GGUF version field 0x{:08x} looks byte-swapped: big-endian GGUF files are not "
             "supported",
             path, f->version_);
  CQKV_CHECK(f->version_ == 2 || f->version_ == 3,
             "{}: unsupported GGUF version {} (supported: 2, 3)", path, f->version_);

  // Smallest encodings: a tensor info is 8+4+4+8 bytes plus its name and dims, a key-value
  // pair 8+4 bytes plus its key and value.
  const uint64_t n_tensors = r.Read<uint64_t>("tensor count");
  const uint64_t n_kv = r.ReadCount("metadata key-value count", 13);
  CQKV_CHECK(n_tensors <= r.remaining() / 24,
             "{}: truncated or corrupt GGUF file: tensor count {} is more than the file can hold",
             path, n_tensors);

  f->kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.ReadString("metadata key");
    const auto type = r.Read<uint32_t>("metadata value type");
    CQKV_CHECK(type <= static_cast<uint32_t>(GgufType::kFloat64),
               "{}: metadata key '{}': unknown value type {} at offset {}", path, key, type,
               r.pos() - 4);
    GgufValue v = ReadValue(r, static_cast<GgufType>(type), key, path, 0);
    CQKV_CHECK(f->kv_index_.emplace(key, f->kv_.size()).second, "{}: duplicate metadata key '{}'",
               path, key);
    f->kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = f->Find("general.alignment")) {
    CQKV_CHECK(IsIntegerType(a->type), "{}: general.alignment is {}, expected an integer", path,
               ValueTypeName(a->type));
    const int64_t align = f->GetInt("general.alignment");
    CQKV_CHECK(align > 0 && align <= (1 << 30) && IsPowerOfTwo(static_cast<uint64_t>(align)),
               "{}: general.alignment {} is not a power of two in [1, 2^30]", path, align);
    f->alignment_ = static_cast<uint64_t>(align);
  }

  f->tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.ReadString("tensor name");
    const auto n_dims = r.Read<uint32_t>("tensor dimension count");
    CQKV_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "{}: tensor '{}': {} dimensions (expected 1..{})",
               path, t.name, n_dims, kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = r.Read<uint64_t>("tensor shape");
      CQKV_CHECK(ne <= (uint64_t{1} << 40), "{}: tensor '{}': absurd dimension {} = {}", path,
                 t.name, d, ne);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    const auto type = r.Read<uint32_t>("tensor type");
    CQKV_CHECK(
        IsSupportedDType(type),
        "{}: tensor '{}' has type {} (ggml type id {}), which cqkv does not support "
        "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, "
        "Q5_K, Q6_K)",
        path, t.name, GgmlTypeName(type), type);
    t.type = static_cast<DType>(type);
    t.offset = r.Read<uint64_t>("tensor data offset");
    CQKV_CHECK(t.offset % f->alignment_ == 0,
               "{}: tensor '{}': data offset {} is not a multiple of the alignment {}", path,
               t.name, t.offset, f->alignment_);
    t.nbytes = TensorBytes(t.type, t.ne, path, t.name);
    CQKV_CHECK(f->tensor_index_.emplace(t.name, f->tensors_.size()).second,
               "{}: duplicate tensor name '{}'", path, t.name);
    f->tensors_.push_back(std::move(t));
  }

  f->data_offset_ = AlignUp(r.pos(), f->alignment_);
  for (const auto& t : f->tensors_) {
    const uint64_t avail = size > f->data_offset_ ? size - f->data_offset_ : 0;
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      Fail(
          "{}: truncated GGUF file: tensor '{}' ({} bytes at data offset {}) ends beyond the "
          "end of the file ({} bytes of tensor data present)",
          path, t.name, t.nbytes, t.offset, avail);
    }
  }
  return f;
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {

[[noreturn]] void WrongType(const std::string& path, const std::string& key, const GgufValue& v,
                            const char* expected) {
  if (v.type == GgufType::kArray) {
    Fail("{}: metadata key '{}' is an array of {}, expected {}", path, key,
         ValueTypeName(v.array_type), expected);
  }
  Fail("{}: metadata key '{}' is {}, expected {}", path, key, ValueTypeName(v.type), expected);
}

int64_t AsInt(const std::string& path, const std::string& key, const GgufValue& v) {
  if (!IsIntegerType(v.type)) WrongType(path, key, v, "an integer");
  if (IsUnsigned(v.type)) {
    const uint64_t u = std::get<uint64_t>(v.value);
    CQKV_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "{}: metadata key '{}': value {} is too large", path, key, u);
    return static_cast<int64_t>(u);
  }
  return std::get<int64_t>(v.value);
}

double AsFloat(const std::string& path, const std::string& key, const GgufValue& v) {
  if (v.type == GgufType::kFloat32 || v.type == GgufType::kFloat64) {
    return std::get<double>(v.value);
  }
  if (IsIntegerType(v.type)) {
    return IsUnsigned(v.type) ? static_cast<double>(std::get<uint64_t>(v.value))
                              : static_cast<double>(std::get<int64_t>(v.value));
  }
  WrongType(path, key, v, "a number");
}

const std::vector<GgufValue>& AsArray(const std::string& path, const std::string& key,
                                      const GgufValue& v, const char* expected) {
  if (v.type != GgufType::kArray) WrongType(path, key, v, expected);
  return std::get<std::vector<GgufValue>>(v.value);
}

}  // namespace

#define CQKV_GGUF_REQUIRE(key)    \
  const GgufValue* v = Find(key); \
  CQKV_CHECK(v != nullptr, "{}: missing metadata key '{}'", path_, key)

std::string GgufFile::GetString(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kString) WrongType(path_, key, *v, "a string");
  return std::get<std::string>(v->value);
}

int64_t GgufFile::GetInt(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  return AsInt(path_, key, *v);
}

double GgufFile::GetFloat(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  return AsFloat(path_, key, *v);
}

bool GgufFile::GetBool(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kBool) WrongType(path_, key, *v, "a bool");
  return std::get<bool>(v->value);
}

std::vector<std::string> GgufFile::GetStringArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  const auto& items = AsArray(path_, key, *v, "an array of strings");
  if (v->array_type != GgufType::kString) WrongType(path_, key, *v, "an array of strings");
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(std::get<std::string>(item.value));
  return out;
}

std::vector<float> GgufFile::GetFloatArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  const auto& items = AsArray(path_, key, *v, "an array of numbers");
  if (v->array_type == GgufType::kArray || v->array_type == GgufType::kString ||
      v->array_type == GgufType::kBool) {
    WrongType(path_, key, *v, "an array of numbers");
  }
  std::vector<float> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(static_cast<float>(AsFloat(path_, key, item)));
  return out;
}

std::vector<int64_t> GgufFile::GetIntArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  const auto& items = AsArray(path_, key, *v, "an array of integers");
  if (!IsIntegerType(v->array_type)) WrongType(path_, key, *v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(AsInt(path_, key, item));
  return out;
}

#undef CQKV_GGUF_REQUIRE

int64_t GgufFile::GetInt(const std::string& key, int64_t def) const {
  return Has(key) ? GetInt(key) : def;
}
double GgufFile::GetFloat(const std::string& key, double def) const {
  return Has(key) ? GetFloat(key) : def;
}
bool GgufFile::GetBool(const std::string& key, bool def) const {
  return Has(key) ? GetBool(key) : def;
}
std::string GgufFile::GetString(const std::string& key, const std::string& def) const {
  return Has(key) ? GetString(key) : def;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const void* GgufFile::TensorData(const GgufTensorInfo& t) const {
  return file_->data() + data_offset_ + t.offset;
}

}  // namespace cqkv
