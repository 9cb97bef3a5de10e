#include "fuzz/mem_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <stdexcept>

namespace cqkv::fuzz {
namespace {

void WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    // A harness failure, not a finding in the reader: no cqkv::Error, so libFuzzer stops on it.
    if (n <= 0) throw std::runtime_error("fuzz: cannot write " + path + ": " + strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

MemFile::MemFile(std::string_view bytes) {
  fd_ = ::memfd_create("cqkv-fuzz", MFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error(std::string("fuzz: memfd_create: ") + strerror(errno));
  path_ = "/proc/self/fd/" + std::to_string(fd_);
  WriteAll(fd_, bytes, path_);
}

MemFile::MemFile(std::string_view bytes, const std::string& suffix) {
  const char* dir = std::getenv("TMPDIR");
  std::string name = std::string(dir && *dir ? dir : "/tmp") + "/cqkv-fuzz-XXXXXX" + suffix;
  std::vector<char> buf(name.begin(), name.end());
  buf.push_back('\0');
  fd_ = ::mkstemps(buf.data(), static_cast<int>(suffix.size()));
  if (fd_ < 0) throw std::runtime_error("fuzz: mkstemps " + name + ": " + strerror(errno));
  path_ = buf.data();
  unlink_ = true;
  WriteAll(fd_, bytes, path_);
}

MemFile::~MemFile() {
  if (unlink_) ::unlink(path_.c_str());
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace cqkv::fuzz
