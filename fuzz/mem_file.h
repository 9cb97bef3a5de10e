// The fuzz input as a file: the readers take paths (they map or read files), so each input is
// written to an anonymous in-memory file (memfd) reachable as /proc/self/fd/N, or to a temporary
// file when a reader looks at the name's extension.
#pragma once

#include <string>
#include <string_view>

namespace cqkv::fuzz {

class MemFile {
 public:
  // An anonymous in-memory file (memfd) holding `bytes`; path() is /proc/self/fd/N.
  explicit MemFile(std::string_view bytes);
  // A file in $TMPDIR (or /tmp) whose name ends in `suffix` (e.g. ".jsonl"), removed on
  // destruction.
  MemFile(std::string_view bytes, const std::string& suffix);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  bool unlink_ = false;
  std::string path_;
};

}  // namespace cqkv::fuzz
