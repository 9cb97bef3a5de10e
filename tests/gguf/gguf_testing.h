// Helpers shared by the GGUF reader tests: temp paths, expected errors, and a byte builder for
// malformed files the writer refuses to produce.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "util/error.h"

namespace cqkv::gguf_testing {

inline std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "cqkv_gguf_test_" + name;
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Runs `f`, which must throw cqkv::Error whose message contains every one of `parts`.
inline void ExpectError(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no cqkv::Error thrown; expected one mentioning '" << parts.at(0) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << msg << "\n  lacks: " << p;
  }
}

inline void ExpectOpenError(const std::string& path, std::vector<std::string> parts) {
  parts.insert(parts.begin(), path);
  ExpectError([&] { GgufFile::Open(path); }, parts);
}

// Hand-assembles GGUF bytes, for malformed files the writer refuses to produce.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    s_.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& v) {
    Put<uint64_t>(v.size());
    s_ += v;
    return *this;
  }
  Bytes& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    s_ += "GGUF";
    return Put(version).Put(n_tensors).Put(n_kv);
  }
  Bytes& KvU32(const std::string& key, uint32_t v) {
    return Str(key).Put<uint32_t>(static_cast<uint32_t>(GgufType::kUint32)).Put(v);
  }
  // A 1-D tensor info.
  Bytes& Tensor(const std::string& name, uint64_t n, uint32_t type, uint64_t offset) {
    return Str(name).Put<uint32_t>(1).Put(n).Put(type).Put(offset);
  }
  Bytes& Pad(size_t align) {
    while (s_.size() % align) s_ += '\0';
    return *this;
  }
  Bytes& Zeros(size_t n) {
    s_.append(n, '\0');
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

}  // namespace cqkv::gguf_testing
