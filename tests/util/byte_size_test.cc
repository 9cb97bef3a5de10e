#include "util/byte_size.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace cqkv {
namespace {

TEST(ByteSize, ParsesBinaryDecimalAndPlainSizes) {
  EXPECT_EQ(ParseByteSize("4096", "--x"), 4096);
  EXPECT_EQ(ParseByteSize("512MiB", "--x"), int64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("8GiB", "--x"), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("8gib", "--x"), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("1.5GB", "--x"), 1500000000);
  EXPECT_EQ(ParseByteSize("64K", "--x"), 64000);
  EXPECT_EQ(ParseByteSize("2Ti", "--x"), int64_t{2} << 40);
}

TEST(ByteSize, RejectsGarbageNamingTheFlag) {
  for (const char* bad : {"", "GiB", "-1GiB", "0", "1XB", "1e30GiB", "nan", "inf", " 5"}) {
    try {
      ParseByteSize(bad, "--kv-memory");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-memory"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cqkv
