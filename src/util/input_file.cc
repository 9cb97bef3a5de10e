#include "util/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"
#include "util/escape.h"

namespace cqkv {
namespace {

std::string LimitText(uint64_t bytes) {
  if (bytes % kGiB == 0) return fmt::format("{} GiB", bytes / kGiB);
  if (bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  return fmt::format("{} bytes", bytes);
}

// Reads until EOF from `fd` into `out`, failing once more than `max_bytes` arrived.
void ReadAll(int fd, uint64_t max_bytes, const std::string& what, const std::string& name,
             std::string& out) {
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("{} {}: read failed: {}", what, name, std::strerror(errno));
    }
    CQKV_CHECK(out.size() + static_cast<uint64_t>(n) <= max_bytes,
               "{} {}: more than the limit of {} for this input", what, name, LimitText(max_bytes));
    out.append(buf, static_cast<size_t>(n));
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

std::string ReadInputFile(const std::string& path, uint64_t max_bytes, const std::string& what,
                          bool allow_stdin) {
  std::string out;
  if (allow_stdin && path == "-") {
    ReadAll(STDIN_FILENO, max_bytes, what, "(standard input)", out);
    return out;
  }
  const std::string name = fmt::format("'{}'", Escaped(path));
  CQKV_CHECK(!path.empty(), "{}: no file name given", what);
  // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever; it has no effect
  // on regular files, the only kind read below.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    Fail("{} {}: cannot open: {}", what, name, std::strerror(errno));
  }
  struct stat st {};
  CQKV_CHECK(::fstat(fd.get(), &st) == 0, "{} {}: cannot stat: {}", what, name,
             std::strerror(errno));
  CQKV_CHECK(!S_ISDIR(st.st_mode), "{} {}: is a directory, expected a file", what, name);
  CQKV_CHECK(S_ISREG(st.st_mode), "{} {}: not a regular file (a device, pipe or socket){}", what,
             name, allow_stdin ? "; use '-' to read standard input" : "");
  const auto size = static_cast<uint64_t>(st.st_size);
  CQKV_CHECK(size <= max_bytes, "{} {}: {} bytes, more than the limit of {} for this input", what,
             name, size, LimitText(max_bytes));
  out.reserve(static_cast<size_t>(size));
  ReadAll(fd.get(), max_bytes, what, name, out);
  return out;
}

std::string ReadFile(const std::string& path) {
  return ReadInputFile(path, kMaxDefaultInputBytes, "file");
}

}  // namespace cqkv
