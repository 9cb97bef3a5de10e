// Output files that appear whole or not at all. Data goes to a fresh temp file made with mkstemp
// in the target's directory (O_EXCL: a planted symlink is never followed), is fsynced and then
// renamed over the target. The temp file is removed when writing fails, when the writer is
// destroyed without Commit, and when the process is stopped by SIGINT/SIGTERM/SIGHUP meanwhile.
// A target that is a character device or FIFO (/dev/null, /dev/stdout, a pipe) is written in
// place instead: renaming over it would replace the device with a regular file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cqkv {

class AtomicFile {
 public:
  // Creates the temp file beside `path`. Throws cqkv::Error naming `path` when it is empty, its
  // directory does not exist or is not writable.
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();  // removes the temp file unless Commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void Write(const void* data, size_t n);
  void Write(std::string_view bytes) { Write(bytes.data(), bytes.size()); }
  // fsync, rename over the target, fsync the directory. The target becomes a regular file with
  // mode 0666 & ~umask; a symlink at the target is replaced, never written through.
  void Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

 private:
  void Abandon();  // closes and removes the temp file

  std::string path_;
  std::string temp_;
  int fd_ = -1;
  int slot_ = -1;  // in the signal-cleanup registry, or -1
  bool committed_ = false;
};

// Writes `bytes` to `path` through an AtomicFile.
void WriteFileAtomic(const std::string& path, std::string_view bytes);

}  // namespace cqkv
