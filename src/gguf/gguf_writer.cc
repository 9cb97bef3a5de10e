// GgufWriter: streams a GGUF v3 file (header, metadata, tensor infos, aligned data) to a temp
// file and renames it into place, so readers never see a partial model.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <type_traits>
#include <utility>

#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"
#include "util/error.h"

namespace cqkv {

using gguf_internal::AlignUp;
using gguf_internal::IsIntegerType;
using gguf_internal::IsPowerOfTwo;
using gguf_internal::IsSupportedDType;
using gguf_internal::kDefaultAlignment;
using gguf_internal::kMagic;
using gguf_internal::kMaxDims;
using gguf_internal::TensorBytes;
using gguf_internal::ValueTypeName;

// ---------------------------------------------------------------------------------------------
// GgufWriter

void GgufWriter::Set(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::AddTensor(const std::string& name, DType type, std::vector<int64_t> ne,
                           const void* data) {
  CQKV_CHECK(IsSupportedDType(static_cast<uint32_t>(type)),
             "GgufWriter: tensor '{}': unsupported dtype id {}", name, static_cast<uint32_t>(type));
  CQKV_CHECK(!ne.empty() && ne.size() <= kMaxDims,
             "GgufWriter: tensor '{}': {} dimensions (expected 1..{})", name, ne.size(), kMaxDims);
  for (int64_t d : ne) CQKV_CHECK(d >= 0, "GgufWriter: tensor '{}': negative dimension", name);
  for (const auto& t : tensors_) {
    CQKV_CHECK(t.info.name != name, "GgufWriter: duplicate tensor name '{}'", name);
  }
  PendingTensor t;
  t.info.name = name;
  t.info.type = type;
  t.info.nbytes = TensorBytes(type, ne, "GgufWriter", name);
  t.info.ne = std::move(ne);
  t.data = data;
  tensors_.push_back(std::move(t));
}

namespace {

// Serialises to a stream; the caller owns the stream's failure handling.
class Emitter {
 public:
  Emitter(std::ostream& out, const std::string& path) : out_(out), path_(path) {}

  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.write(reinterpret_cast<const char*>(&v), sizeof(T));
    pos_ += sizeof(T);
  }
  void Bytes(const void* p, uint64_t n) {
    out_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    pos_ += n;
  }
  void Str(const std::string& s) {
    Put<uint64_t>(s.size());
    Bytes(s.data(), s.size());
  }
  void PadTo(uint64_t align) {
    static const char kZeros[256] = {};
    uint64_t pad = AlignUp(pos_, align) - pos_;
    while (pad > 0) {
      const uint64_t n = std::min<uint64_t>(pad, sizeof(kZeros));
      Bytes(kZeros, n);
      pad -= n;
    }
  }

  // Writes the value's payload as `type` (the type tag is written by the caller).
  void Value(const std::string& key, const GgufValue& v, GgufType type) {
    CQKV_CHECK(v.type == type, "{}: metadata key '{}': array element is {} in an array of {}",
               path_, key, ValueTypeName(v.type), ValueTypeName(type));
    switch (type) {
      case GgufType::kUint8:
        return Put(Narrow<uint8_t>(key, v));
      case GgufType::kInt8:
        return Put(Narrow<int8_t>(key, v));
      case GgufType::kUint16:
        return Put(Narrow<uint16_t>(key, v));
      case GgufType::kInt16:
        return Put(Narrow<int16_t>(key, v));
      case GgufType::kUint32:
        return Put(Narrow<uint32_t>(key, v));
      case GgufType::kInt32:
        return Put(Narrow<int32_t>(key, v));
      case GgufType::kUint64:
        return Put(Narrow<uint64_t>(key, v));
      case GgufType::kInt64:
        return Put(Narrow<int64_t>(key, v));
      case GgufType::kFloat32:
        return Put(static_cast<float>(Get<double>(key, v)));
      case GgufType::kFloat64:
        return Put(Get<double>(key, v));
      case GgufType::kBool:
        return Put<uint8_t>(Get<bool>(key, v) ? 1 : 0);
      case GgufType::kString:
        return Str(Get<std::string>(key, v));
      case GgufType::kArray: {
        const auto& items = Get<std::vector<GgufValue>>(key, v);
        Put(static_cast<uint32_t>(v.array_type));
        Put<uint64_t>(items.size());
        for (const auto& item : items) Value(key, item, v.array_type);
        return;
      }
    }
    Fail("{}: metadata key '{}': unknown value type {}", path_, key, static_cast<uint32_t>(type));
  }

 private:
  template <typename T>
  const T& Get(const std::string& key, const GgufValue& v) const {
    const T* p = std::get_if<T>(&v.value);
    CQKV_CHECK(p != nullptr, "{}: metadata key '{}': {} value holds the wrong C++ type", path_, key,
               ValueTypeName(v.type));
    return *p;
  }
  // Integers are held widened; writing them back must not silently truncate.
  template <typename T>
  T Narrow(const std::string& key, const GgufValue& v) const {
    bool ok;
    T out;
    if (const auto* u = std::get_if<uint64_t>(&v.value)) {
      out = static_cast<T>(*u);
      ok = std::in_range<T>(*u);
    } else {
      const int64_t i = Get<int64_t>(key, v);
      out = static_cast<T>(i);
      ok = std::in_range<T>(i);
    }
    CQKV_CHECK(ok, "{}: metadata key '{}': value does not fit {}", path_, key,
               ValueTypeName(v.type));
    return out;
  }

  std::ostream& out_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

}  // namespace

void GgufWriter::Write(const std::string& path) const {
  uint64_t alignment = kDefaultAlignment;
  for (const auto& [k, v] : kv_) {
    if (k != "general.alignment") continue;
    CQKV_CHECK(IsIntegerType(v.type), "{}: general.alignment must be an integer", path);
    const auto* u = std::get_if<uint64_t>(&v.value);
    const auto* i = std::get_if<int64_t>(&v.value);
    const uint64_t a = u ? *u : (i && *i > 0 ? static_cast<uint64_t>(*i) : 0);
    CQKV_CHECK(IsPowerOfTwo(a) && a <= (uint64_t{1} << 30),
               "{}: general.alignment must be a power of two", path);
    alignment = a;
  }

  const std::string tmp = path + ".tmp";
  try {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    CQKV_CHECK(out.good(), "{}: cannot open for writing: {}", tmp, std::strerror(errno));
    Emitter e(out, path);
    e.Put(kMagic);
    e.Put<uint32_t>(3);
    e.Put<uint64_t>(tensors_.size());
    e.Put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
      e.Str(k);
      e.Put(static_cast<uint32_t>(v.type));
      e.Value(k, v, v.type);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      e.Str(t.info.name);
      e.Put<uint32_t>(static_cast<uint32_t>(t.info.ne.size()));
      for (int64_t d : t.info.ne) e.Put<uint64_t>(static_cast<uint64_t>(d));
      e.Put(static_cast<uint32_t>(t.info.type));
      e.Put<uint64_t>(offset);
      offset = AlignUp(offset + t.info.nbytes, alignment);
    }
    e.PadTo(alignment);
    for (const auto& t : tensors_) {
      e.Bytes(t.data, t.info.nbytes);
      e.PadTo(alignment);
    }
    out.flush();
    CQKV_CHECK(out.good(), "{}: write failed (disk full?)", tmp);
    out.close();
    CQKV_CHECK(!out.fail(), "{}: close failed", tmp);
    CQKV_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "{}: cannot rename from {}: {}", path,
               tmp, std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace cqkv
