// GgufWriter: streams a GGUF v3 file (header, metadata, tensor infos, aligned data) through an
// AtomicFile, so readers never see a partial model.
#include <algorithm>
#include <type_traits>
#include <utility>

#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace cqkv {

using gguf_internal::AlignUp;
using gguf_internal::IsIntegerType;
using gguf_internal::IsPowerOfTwo;
using gguf_internal::IsSupportedDType;
using gguf_internal::kDefaultAlignment;
using gguf_internal::kMagic;
using gguf_internal::kMaxDims;
using gguf_internal::kMaxNameBytes;
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
  CQKV_CHECK(name.size() < kMaxNameBytes,
             "GgufWriter: tensor name '{}' has {} bytes (at most {}: llama.cpp's GGML_MAX_NAME)",
             name, name.size(), kMaxNameBytes - 1);
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

// Serialises to an AtomicFile, buffering the many small header fields.
class Emitter {
 public:
  Emitter(AtomicFile& out, const std::string& path) : out_(out), path_(path) {}

  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Bytes(&v, sizeof(T));
  }
  void Bytes(const void* p, uint64_t n) {
    if (buf_.size() + n > kBufferBytes) Flush();
    if (n >= kBufferBytes) {
      out_.Write(p, n);
    } else {
      buf_.append(static_cast<const char*>(p), n);
    }
    pos_ += n;
  }
  void Flush() {
    out_.Write(buf_);
    buf_.clear();
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
        Put(static_cast<uint32_t>(v.array_type));
        if (const auto* a = std::get_if<GgufArray>(&v.value)) return CompactArray(key, v, *a);
        const auto& items = Get<std::vector<GgufValue>>(key, v);
        Put<uint64_t>(items.size());
        for (const auto& item : items) Value(key, item, v.array_type);
        return;
      }
    }
    Fail("{}: metadata key '{}': unknown value type {}", path_, key, static_cast<uint32_t>(type));
  }

 private:
  static constexpr size_t kBufferBytes = size_t{1} << 20;

  // A GgufArray holds its elements as the file stores them; strings regain their lengths.
  void CompactArray(const std::string& key, const GgufValue& v, const GgufArray& a) {
    if (v.array_type == GgufType::kString) {
      Put<uint64_t>(a.ends.size());
      uint64_t begin = 0;
      for (uint64_t end : a.ends) {
        CQKV_CHECK(end >= begin && end <= a.data.size(),
                   "{}: metadata key '{}': malformed string array", path_, key);
        Put<uint64_t>(end - begin);
        Bytes(a.data.data() + begin, end - begin);
        begin = end;
      }
      return;
    }
    const uint64_t width = gguf_internal::ScalarWidth(v.array_type);
    CQKV_CHECK(width > 0 && a.data.size() % width == 0,
               "{}: metadata key '{}': malformed array of {}", path_, key,
               ValueTypeName(v.array_type));
    Put<uint64_t>(a.data.size() / width);
    Bytes(a.data.data(), a.data.size());
  }

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

  AtomicFile& out_;
  const std::string& path_;
  std::string buf_;
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

  AtomicFile out(path);  // removed again if anything below throws
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
  e.Flush();
  out.Commit();
}

}  // namespace cqkv
