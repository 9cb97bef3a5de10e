#include "util/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "util/error.h"
#include "util/escape.h"

namespace cqkv {
namespace {

// Temp files to unlink if SIGINT/SIGTERM/SIGHUP ends the process mid-write. This is the one piece
// of process-global mutable state in cqkv: a signal handler cannot be handed a context, so the
// paths it removes must live where it can reach them, in fixed storage it can read without
// locks or allocation (unlink is async-signal-safe). A file that finds no free slot is still
// removed on every ordinary failure; only the signal case is lost.
constexpr int kSlots = 64;
enum SlotState : int { kFree = 0, kFilling = 1, kArmed = 2 };
struct Slot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX];
};
Slot g_slots[kSlots];
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

void OnFatalSignal(int sig) {
  for (Slot& s : g_slots) {
    if (s.state.load(std::memory_order_acquire) == kArmed) ::unlink(s.path);
  }
  // Then die of the signal as we would have without the handler (exit status 128 + sig).
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);
}

// Installs the handler for signals still at their default action (a program with its own
// handlers, such as `cqkv serve`, keeps them).
void InstallHandlersOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : kSignals) {
      struct sigaction old = {};
      if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
      struct sigaction sa = {};
      sa.sa_handler = OnFatalSignal;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, nullptr);
    }
  });
}

int Register(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  InstallHandlersOnce();
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (g_slots[i].state.compare_exchange_strong(expected, kFilling)) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
      g_slots[i].state.store(kArmed, std::memory_order_release);
      return i;
    }
  }
  return -1;
}

void Unregister(int slot) {
  if (slot >= 0) g_slots[slot].state.store(kFree, std::memory_order_release);
}

// The process umask without changing it (umask(2) can only be read by setting it, which races
// with other threads creating files); Linux reports it in /proc/self/status.
mode_t CurrentUmask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Umask:", 0) == 0)
      return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
  }
  return 022;
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  CQKV_CHECK(!path.empty(), "output file: empty path");
  const std::filesystem::path p(path);
  CQKV_CHECK(p.has_filename(), "output file '{}': names a directory, expected a file name",
             Escaped(path));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    CQKV_CHECK(!S_ISDIR(st.st_mode), "output file '{}': is a directory", Escaped(path));
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
      // /dev/null, /dev/stdout, a pipe: written in place; renaming over a device would replace
      // it with a regular file.
      fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
      CQKV_CHECK(fd_ >= 0, "output file '{}': cannot open: {}", Escaped(path),
                 std::strerror(errno));
      return;
    }
  }
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  std::string tmpl = (dir / fmt::format(".{}.tmp.XXXXXX", p.filename().string())).string();
  fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
  CQKV_CHECK(fd_ >= 0, "output file '{}': cannot create a temporary file in '{}': {}",
             Escaped(path), Escaped(dir.string()), std::strerror(errno));
  temp_ = tmpl;
  slot_ = Register(temp_);
}

AtomicFile::~AtomicFile() {
  if (!committed_) Abandon();
}

void AtomicFile::Abandon() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  Unregister(slot_);
  slot_ = -1;
}

void AtomicFile::Write(const void* data, size_t n) {
  CQKV_CHECK(fd_ >= 0 && !committed_, "output file '{}': write after commit or failure",
             Escaped(path_));
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      Abandon();
      Fail("output file '{}': write failed: {}", Escaped(path_), std::strerror(err));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::Commit() {
  CQKV_CHECK(fd_ >= 0 && !committed_, "output file '{}': commit after commit or failure",
             Escaped(path_));
  auto fail = [this](const char* step) {
    const int err = errno;
    Abandon();
    Fail("output file '{}': {} failed: {}", Escaped(path_), step, std::strerror(err));
  };
  if (temp_.empty()) {  // a device or pipe, written in place
    const int rc = ::close(fd_);
    fd_ = -1;
    committed_ = true;
    CQKV_CHECK(rc == 0, "output file '{}': close failed: {}", Escaped(path_), std::strerror(errno));
    return;
  }
  if (::fchmod(fd_, 0666 & ~CurrentUmask()) != 0) fail("chmod");
  if (::fsync(fd_) != 0) fail("fsync");
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("close");
  }
  fd_ = -1;
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename");
  committed_ = true;
  Unregister(slot_);
  slot_ = -1;
  // The rename itself is durable only once the directory is synced; failing that is not an
  // error of the write (the data is complete), so it is best effort.
  const std::filesystem::path p(path_);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void WriteFileAtomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.Write(bytes);
  f.Commit();
}

}  // namespace cqkv
