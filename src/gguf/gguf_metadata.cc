// GGUF metadata values: the builders, compact arrays (GgufArray) and GgufFile's typed getters.
#include <cstring>
#include <limits>

#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"
#include "util/error.h"
#include "util/escape.h"

namespace cqkv {

using gguf_internal::IsIntegerType;
using gguf_internal::ScalarWidth;
using gguf_internal::ValueTypeName;

namespace {

bool IsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void Append(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// Element i of a compact array of `type`, as a scalar value.
GgufValue CompactElement(const GgufArray& a, GgufType type, uint64_t i) {
  GgufValue v;
  v.type = type;
  if (type == GgufType::kString) {
    const uint64_t begin = i == 0 ? 0 : a.ends[i - 1];
    v.value = a.data.substr(begin, a.ends[i] - begin);
    return v;
  }
  const char* p = a.data.data() + i * ScalarWidth(type);
  switch (type) {
    case GgufType::kUint8:
      v.value = uint64_t{Load<uint8_t>(p)};
      break;
    case GgufType::kInt8:
      v.value = int64_t{Load<int8_t>(p)};
      break;
    case GgufType::kUint16:
      v.value = uint64_t{Load<uint16_t>(p)};
      break;
    case GgufType::kInt16:
      v.value = int64_t{Load<int16_t>(p)};
      break;
    case GgufType::kUint32:
      v.value = uint64_t{Load<uint32_t>(p)};
      break;
    case GgufType::kInt32:
      v.value = int64_t{Load<int32_t>(p)};
      break;
    case GgufType::kUint64:
      v.value = Load<uint64_t>(p);
      break;
    case GgufType::kInt64:
      v.value = Load<int64_t>(p);
      break;
    case GgufType::kFloat32:
      v.value = double{Load<float>(p)};
      break;
    case GgufType::kFloat64:
      v.value = Load<double>(p);
      break;
    case GgufType::kBool:
      v.value = *p != 0;
      break;
    default:
      break;  // unreachable: compact arrays hold scalars and strings only
  }
  return v;
}

}  // namespace

namespace gguf_internal {

uint64_t ScalarWidth(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

}  // namespace gguf_internal

// ---------------------------------------------------------------------------------------------
// GgufValue

GgufValue GgufValue::U32(uint32_t v) { return GgufValue{GgufType::kUint32, {}, uint64_t{v}}; }
GgufValue GgufValue::I32(int32_t v) { return GgufValue{GgufType::kInt32, {}, int64_t{v}}; }
GgufValue GgufValue::U64(uint64_t v) { return GgufValue{GgufType::kUint64, {}, v}; }
GgufValue GgufValue::F32(float v) { return GgufValue{GgufType::kFloat32, {}, double{v}}; }
GgufValue GgufValue::Bool(bool v) { return GgufValue{GgufType::kBool, {}, v}; }
GgufValue GgufValue::Str(std::string v) { return GgufValue{GgufType::kString, {}, std::move(v)}; }

GgufValue GgufValue::StrArray(const std::vector<std::string>& v) {
  GgufArray a;
  a.ends.reserve(v.size());
  for (const auto& s : v) {
    a.data += s;
    a.ends.push_back(a.data.size());
  }
  return GgufValue{GgufType::kArray, GgufType::kString, std::move(a)};
}

GgufValue GgufValue::F32Array(const std::vector<float>& v) {
  GgufArray a;
  for (float f : v) Append(a.data, f);
  return GgufValue{GgufType::kArray, GgufType::kFloat32, std::move(a)};
}

GgufValue GgufValue::I32Array(const std::vector<int32_t>& v) {
  GgufArray a;
  for (int32_t i : v) Append(a.data, i);
  return GgufValue{GgufType::kArray, GgufType::kInt32, std::move(a)};
}

uint64_t GgufValue::array_size() const {
  if (const auto* a = std::get_if<GgufArray>(&value)) {
    return array_type == GgufType::kString ? a->ends.size()
                                           : a->data.size() / ScalarWidth(array_type);
  }
  if (const auto* items = std::get_if<std::vector<GgufValue>>(&value)) return items->size();
  return 0;
}

GgufValue GgufValue::ArrayElement(uint64_t i) const {
  if (const auto* a = std::get_if<GgufArray>(&value)) return CompactElement(*a, array_type, i);
  return std::get<std::vector<GgufValue>>(value).at(i);
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// GgufFile getters

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {

[[noreturn]] void WrongType(const std::string& path, const std::string& key, const GgufValue& v,
                            const char* expected) {
  if (v.type == GgufType::kArray) {
    Fail("{}: metadata key '{}' is an array of {}, expected {}", Escaped(path), Escaped(key),
         ValueTypeName(v.array_type), expected);
  }
  Fail("{}: metadata key '{}' is {}, expected {}", Escaped(path), Escaped(key),
       ValueTypeName(v.type), expected);
}

int64_t AsInt(const std::string& path, const std::string& key, const GgufValue& v) {
  if (!IsIntegerType(v.type)) WrongType(path, key, v, "an integer");
  if (IsUnsigned(v.type)) {
    const uint64_t u = std::get<uint64_t>(v.value);
    CQKV_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "{}: metadata key '{}': value {} is too large", Escaped(path), Escaped(key), u);
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

}  // namespace

#define CQKV_GGUF_REQUIRE(key)    \
  const GgufValue* v = Find(key); \
  CQKV_CHECK(v != nullptr, "{}: missing metadata key '{}'", Escaped(path_), Escaped(key))

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

uint64_t GgufFile::ArrayLength(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kArray) WrongType(path_, key, *v, "an array");
  return v->array_size();
}

std::vector<std::string> GgufFile::GetStringArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kArray || v->array_type != GgufType::kString) {
    WrongType(path_, key, *v, "an array of strings");
  }
  const uint64_t n = v->array_size();
  std::vector<std::string> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    out.push_back(std::get<std::string>(v->ArrayElement(i).value));
  }
  return out;
}

std::vector<float> GgufFile::GetFloatArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kArray || v->array_type == GgufType::kArray ||
      v->array_type == GgufType::kString || v->array_type == GgufType::kBool) {
    WrongType(path_, key, *v, "an array of numbers");
  }
  const uint64_t n = v->array_size();
  std::vector<float> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    out.push_back(static_cast<float>(AsFloat(path_, key, v->ArrayElement(i))));
  }
  return out;
}

std::vector<int64_t> GgufFile::GetIntArray(const std::string& key) const {
  CQKV_GGUF_REQUIRE(key);
  if (v->type != GgufType::kArray || !IsIntegerType(v->array_type)) {
    WrongType(path_, key, *v, "an array of integers");
  }
  const uint64_t n = v->array_size();
  std::vector<int64_t> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) out.push_back(AsInt(path_, key, v->ArrayElement(i)));
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
