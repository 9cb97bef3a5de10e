// Bounded reading of whole input files. Every file cqkv reads into memory (text data, tokenizer
// files, codebooks, JSON) goes through ReadInputFile, so /dev/zero, a FIFO or a directory is a
// clear error instead of an endless read, and a file larger than its kind can sensibly be is
// refused before it is read. Model weights are not read but mapped (util/mapped_file.h).
#pragma once

#include <cstdint>
#include <string>

namespace cqkv {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;
// Limits per kind of input; generous for real files (WikiText-2 test is 1.3 MB, the largest
// tokenizer.json of common models ~20 MB, a 7B model's CQ codebooks ~300 MB).
inline constexpr uint64_t kMaxTextInputBytes = 2 * kGiB;        // --data, --text-file
inline constexpr uint64_t kMaxTokenizerFileBytes = 512 * kMiB;  // tokenizer.bin/.json
inline constexpr uint64_t kMaxCodebookFileBytes = 16 * kGiB;    // .cqcb
inline constexpr uint64_t kMaxDefaultInputBytes = 16 * kGiB;    // anything else

// Reads all of `path`, which must be a regular file of at most `max_bytes` bytes, or "-" for
// standard input when `allow_stdin` (then reading stops with an error past `max_bytes`).
// `what` names the input in messages ("--data", "tokenizer file"). Throws cqkv::Error naming
// `what` and the (escaped) path for: missing, a directory, a device/FIFO/socket, too large,
// unreadable.
std::string ReadInputFile(const std::string& path, uint64_t max_bytes, const std::string& what,
                          bool allow_stdin = false);

// ReadInputFile for a regular file with the default limit.
std::string ReadFile(const std::string& path);

}  // namespace cqkv
