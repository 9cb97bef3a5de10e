#include "calibrate/activation_spill.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "util/error.h"

namespace cqkv {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

void WriteAll(const std::string& name, std::span<const float> v) {
  if (v.empty()) return;
  File f(std::fopen(name.c_str(), "ab"));
  CQKV_CHECK(f != nullptr, "calibration spill {}: cannot open for writing: {}", name,
             std::strerror(errno));
  const size_t wrote = std::fwrite(v.data(), sizeof(float), v.size(), f.get());
  const int write_errno = errno;
  const int closed = std::fclose(f.release());  // buffered data may fail only here
  CQKV_CHECK(wrote == v.size() && closed == 0,
             "calibration spill {}: write failed ({}); free disk space or pass another "
             "--spill-dir",
             name, std::strerror(wrote == v.size() ? errno : write_errno));
}

std::vector<float> ReadAndRemove(const std::string& name) {
  std::vector<float> v;
  std::error_code ec;
  if (!std::filesystem::exists(name, ec)) return v;  // nothing was appended
  const auto bytes = std::filesystem::file_size(name, ec);
  CQKV_CHECK(!ec && bytes % sizeof(float) == 0, "calibration spill {}: unreadable size", name);
  v.resize(bytes / sizeof(float));
  File f(std::fopen(name.c_str(), "rb"));
  CQKV_CHECK(f != nullptr && std::fread(v.data(), sizeof(float), v.size(), f.get()) == v.size(),
             "calibration spill {}: read failed: {}", name, std::strerror(errno));
  f.reset();
  std::filesystem::remove(name, ec);  // frees the disk as the fit goes on
  return v;
}

}  // namespace

ActivationSpill::ActivationSpill(int n_problems, const std::string& dir) {
  if (dir.empty()) {
    x_.resize(static_cast<size_t>(n_problems));
    w_.resize(static_cast<size_t>(n_problems));
    return;
  }
  std::string templ = (std::filesystem::path(dir) / "cqkv-calibrate-XXXXXX").string();
  CQKV_CHECK(mkdtemp(templ.data()) != nullptr,
             "--spill-dir {}: cannot create a temporary directory there: {}", dir,
             std::strerror(errno));
  path_ = templ;
}

ActivationSpill::~ActivationSpill() {
  if (path_.empty()) return;
  std::error_code ec;  // a destructor must not throw; a leftover directory is named below
  std::filesystem::remove_all(path_, ec);
  if (ec) fmt::print(stderr, "warning: could not remove {}: {}\n", path_, ec.message());
}

std::string ActivationSpill::FileName(int problem, char kind) const {
  return fmt::format("{}/{}.{}.f32", path_, problem, kind);
}

void ActivationSpill::Append(int problem, std::span<const float> x, std::span<const float> w) {
  if (path_.empty()) {
    x_[problem].insert(x_[problem].end(), x.begin(), x.end());
    w_[problem].insert(w_[problem].end(), w.begin(), w.end());
    return;
  }
  WriteAll(FileName(problem, 'x'), x);
  WriteAll(FileName(problem, 'w'), w);
  bytes_written_ += static_cast<int64_t>((x.size() + w.size()) * sizeof(float));
}

void ActivationSpill::Take(int problem, std::vector<float>* x, std::vector<float>* w) {
  if (path_.empty()) {
    *x = std::move(x_[problem]);
    *w = std::move(w_[problem]);
    x_[problem] = {};
    w_[problem] = {};
    return;
  }
  *x = ReadAndRemove(FileName(problem, 'x'));
  *w = ReadAndRemove(FileName(problem, 'w'));
}

int64_t ActivationSpill::Size(int problem, bool weights) const {
  if (path_.empty()) return static_cast<int64_t>((weights ? w_ : x_)[problem].size());
  std::error_code ec;
  const std::string name = FileName(problem, weights ? 'w' : 'x');
  if (!std::filesystem::exists(name, ec)) return 0;  // nothing was appended
  const auto bytes = std::filesystem::file_size(name, ec);
  CQKV_CHECK(!ec && bytes % sizeof(float) == 0, "calibration spill {}: unreadable size", name);
  return static_cast<int64_t>(bytes / sizeof(float));
}

void ActivationSpill::Read(int problem, bool weights, int64_t offset, std::span<float> out) const {
  if (path_.empty()) {
    const std::vector<float>& v = (weights ? w_ : x_)[problem];
    CQKV_CHECK(offset >= 0 && offset + static_cast<int64_t>(out.size()) <= std::ssize(v),
               "calibration spill (memory) problem {}: read of {} floats at {} past its {}",
               problem, out.size(), offset, v.size());
    std::copy_n(v.begin() + offset, out.size(), out.begin());
    return;
  }
  // pread on a descriptor of its own: threads never share a file position.
  const std::string name = FileName(problem, weights ? 'w' : 'x');
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  CQKV_CHECK(fd >= 0, "calibration spill {}: cannot open: {}", name, std::strerror(errno));
  auto* dst = reinterpret_cast<char*>(out.data());
  size_t left = out.size() * sizeof(float);
  off_t at = static_cast<off_t>(offset * static_cast<int64_t>(sizeof(float)));
  while (left > 0) {
    const ssize_t got = ::pread(fd, dst, left, at);
    if (got <= 0) {
      const int read_errno = errno;
      ::close(fd);
      Fail("calibration spill {}: read of {} floats at {} failed: {}", name, out.size(), offset,
           got == 0 ? "file too short" : std::strerror(read_errno));
    }
    dst += got;
    at += got;
    left -= static_cast<size_t>(got);
  }
  ::close(fd);
}

void ActivationSpill::Release(int problem) {
  if (path_.empty()) {
    x_[problem] = {};
    w_[problem] = {};
    return;
  }
  std::error_code ec;
  std::filesystem::remove(FileName(problem, 'x'), ec);  // frees the disk as the fit goes on
  std::filesystem::remove(FileName(problem, 'w'), ec);
}

}  // namespace cqkv
