// Human byte sizes for flags such as --kv-memory: "8GiB", "512MiB", "1.5GB", "4096".
#pragma once

#include <cstdint>
#include <string>

namespace cqkv {

// Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) suffixes, case-insensitive, an
// optional "B"; a number alone is bytes. Throws cqkv::Error naming `what` (e.g. the flag) for
// anything else, a non-positive size or one over 2^62.
int64_t ParseByteSize(const std::string& text, const std::string& what);

}  // namespace cqkv
