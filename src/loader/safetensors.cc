#include "loader/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

#include "util/error.h"

namespace cqkv {
namespace {

using Json = nlohmann::json;

// The shape dimensions of one tensor, each a non-negative integer; the element count must not
// overflow (a hostile header could claim 2^40 x 2^40).
std::vector<int64_t> ReadShape(const std::string& path, const std::string& name, const Json& j) {
  CQKV_CHECK(j.is_array(), "{}: tensor '{}': \"shape\" is not an array", path, name);
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (const Json& d : j) {
    CQKV_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
               "{}: tensor '{}': shape entry {} is not a non-negative integer", path, name,
               d.dump());
    const uint64_t v = d.get<uint64_t>();
    CQKV_CHECK(
        v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
            (v == 0 || count <= std::numeric_limits<int64_t>::max() / static_cast<int64_t>(v)),
        "{}: tensor '{}': shape {} overflows", path, name, j.dump());
    count *= static_cast<int64_t>(v);
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

int64_t ReadOffset(const std::string& path, const std::string& name, const Json& j) {
  CQKV_CHECK(j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0),
             "{}: tensor '{}': data_offsets entry {} is not a non-negative integer", path, name,
             j.dump());
  const uint64_t v = j.get<uint64_t>();
  CQKV_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             "{}: tensor '{}': data offset {} is out of range", path, name, v);
  return static_cast<int64_t>(v);
}

}  // namespace

int SafetensorsDTypeSize(const std::string& dtype) {
  static const std::pair<const char*, int> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  for (const auto& [name, size] : kSizes) {
    if (dtype == name) return size;
  }
  return 0;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  return std::make_shared<const SafetensorsFile>(path);
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const uint64_t size = file_.size();
  CQKV_CHECK(size >= 8, "{}: {} bytes is too short for a safetensors file (8-byte header length)",
             path, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_.data()[i];  // little-endian
  CQKV_CHECK(header_len >= 2 && header_len <= kMaxSafetensorsHeader && header_len <= size - 8,
             "{}: header length {} is invalid (file has {} bytes after the length; limit {})", path,
             header_len, size - 8, kMaxSafetensorsHeader);
  const char* header = reinterpret_cast<const char*>(file_.data()) + 8;
  CQKV_CHECK(header[0] == '{', "{}: header does not start with a JSON object", path);
  Json j;
  try {
    j = Json::parse(header, header + header_len);
  } catch (const Json::exception& e) {
    Fail("{}: header is not valid JSON: {}", path, e.what());
  }
  CQKV_CHECK(j.is_object(), "{}: header is not a JSON object", path);

  const uint8_t* data = file_.data() + 8 + header_len;
  const int64_t data_size = static_cast<int64_t>(size - 8 - header_len);
  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") {
      CQKV_CHECK(info.is_object(), "{}: \"__metadata__\" is not an object", path);
      for (const auto& [k, v] : info.items()) {
        CQKV_CHECK(v.is_string(), "{}: \"__metadata__\" entry '{}' is not a string", path, k);
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    CQKV_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                   info.contains("data_offsets"),
               "{}: tensor '{}' needs \"dtype\", \"shape\" and \"data_offsets\"", path, name);
    CQKV_CHECK(info.size() == 3, "{}: tensor '{}' has unexpected fields: {}", path, name,
               info.dump());
    SafetensorsTensor t;
    t.name = name;
    CQKV_CHECK(info["dtype"].is_string(), "{}: tensor '{}': \"dtype\" is not a string", path, name);
    t.dtype = info["dtype"].get<std::string>();
    const int elem = SafetensorsDTypeSize(t.dtype);
    CQKV_CHECK(elem > 0, "{}: tensor '{}' has unknown dtype '{}'", path, name, t.dtype);
    t.shape = ReadShape(path, name, info["shape"]);
    const Json& off = info["data_offsets"];
    CQKV_CHECK(off.is_array() && off.size() == 2,
               "{}: tensor '{}': \"data_offsets\" is not a [begin, end] pair", path, name);
    const int64_t begin = ReadOffset(path, name, off[0]);
    const int64_t end = ReadOffset(path, name, off[1]);
    CQKV_CHECK(begin <= end && end <= data_size,
               "{}: tensor '{}': data range [{}, {}) is outside the {} bytes of tensor data (file "
               "truncated?)",
               path, name, begin, end, data_size);
    int64_t count = 1;
    for (int64_t d : t.shape) count *= d;  // ReadShape ruled out overflow of the element count
    CQKV_CHECK(count <= (end - begin) / elem && count * elem == end - begin,
               "{}: tensor '{}': shape {} of {} needs {} bytes but its data range [{}, {}) has {}",
               path, name, info["shape"].dump(), t.dtype,
               count <= std::numeric_limits<int64_t>::max() / elem ? count * elem : -1, begin, end,
               end - begin);
    t.data = data + begin;
    t.nbytes = end - begin;
    tensors_.emplace(name, std::move(t));
  }

  // The reference implementation requires the ranges to cover the data exactly: an overlap means
  // two tensors share bytes, a gap or a tail means bytes that belong to nothing (a corrupt file).
  std::vector<const SafetensorsTensor*> order;
  for (const auto& [name, t] : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->data != b->data ? a->data < b->data : a->nbytes < b->nbytes;
  });
  int64_t pos = 0;
  for (const SafetensorsTensor* t : order) {
    const int64_t begin = t->data - data;
    CQKV_CHECK(begin >= pos, "{}: tensor '{}' at bytes [{}, {}) overlaps the tensor before it",
               path, t->name, begin, begin + t->nbytes);
    CQKV_CHECK(begin == pos, "{}: bytes [{}, {}) before tensor '{}' belong to no tensor", path, pos,
               begin, t->name);
    pos = begin + t->nbytes;
  }
  CQKV_CHECK(pos == data_size, "{}: the last {} bytes of the file belong to no tensor", path,
             data_size - pos);
}

}  // namespace cqkv
