#include "util/byte_size.h"

#include <gtest/gtest.h>

#include "cqkv/error.h"

namespace cqkv {
namespace {

TEST(ByteSize, UnitsAndNumbers) {
  EXPECT_EQ(ParseByteSize("1048576", "--x"), 1048576);
  EXPECT_EQ(ParseByteSize("0", "--x"), 0);
  EXPECT_EQ(ParseByteSize("512MiB", "--x"), int64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("8GiB", "--x"), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("8gib", "--x"), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("64KiB", "--x"), 65536);
  EXPECT_EQ(ParseByteSize("1.5GB", "--x"), 1500000000);
  EXPECT_EQ(ParseByteSize("1.5GiB", "--x"), int64_t{3} << 29);
  EXPECT_EQ(ParseByteSize("500MB", "--x"), 500000000);
  EXPECT_EQ(ParseByteSize("10kB", "--x"), 10000);
  EXPECT_EQ(ParseByteSize("8G", "--x"), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("64M", "--x"), int64_t{64} << 20);
  EXPECT_EQ(ParseByteSize("100B", "--x"), 100);
  EXPECT_EQ(ParseByteSize(" 2 TiB ", "--x"), int64_t{2} << 40);
  EXPECT_EQ(ParseByteSize("0.5KiB", "--x"), 512);
}

TEST(ByteSize, BadValuesNameTheFlag) {
  for (const char* bad :
       {"", "abc", "-5", "12XB", "1.5", "1.2.3MiB", ".MiB", "GiB", "99999999999TiB",
        "18446744073709551616", "9223372036854775808", "8 GiB extra"}) {
    try {
      ParseByteSize(bad, "--kv-memory");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-memory"), std::string::npos) << e.what();
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace cqkv
