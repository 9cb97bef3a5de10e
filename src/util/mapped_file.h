// Read-only memory mapping of a whole file, so model weights are paged in on demand and never
// copied. Throws cqkv::Error naming the file when it cannot be opened or mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// ReadFile and WriteFileAtomic moved to their own files; included here for existing callers.
#include "util/atomic_file.h"
#include "util/input_file.h"

namespace cqkv {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace cqkv
