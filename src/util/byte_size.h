// Parses human-written memory sizes for flags such as --kv-memory and --body-limit.
#pragma once

#include <cstdint>
#include <string_view>

namespace cqkv {

// "1048576" (bytes), "512MiB", "8GiB", "64KiB" (powers of 1024), "1.5GB", "500MB", "10kB"
// (powers of 1000), "8G", "512M", "64K" (single letters: powers of 1024, as ulimit and docker
// read them); a unit may follow a space, units are case-insensitive, "B" alone means bytes.
// Fractions need a unit and round to the nearest byte. Throws cqkv::Error naming `what` (the flag)
// for anything else: empty, negative, unknown unit, more than INT64_MAX bytes.
int64_t ParseByteSize(std::string_view text, std::string_view what);

}  // namespace cqkv
