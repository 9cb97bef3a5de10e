#include "util/utf8.h"

#include <gtest/gtest.h>

namespace cqkv {
namespace {

TEST(Utf8, CompleteUtf8Prefix) {
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xE2\x82\xAC"), 4u);  // "a€" complete
  EXPECT_EQ(CompleteUtf8Prefix("a\xE2\x82"), 1u);      // € cut after 2 of 3 bytes
  EXPECT_EQ(CompleteUtf8Prefix("a\xE2"), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x98"), 0u);  // 4-byte emoji cut
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(CompleteUtf8Prefix("x\x80"), 2u);      // stray continuation byte: passed on
  EXPECT_EQ(CompleteUtf8Prefix("a\xF0\x9F"), 1u);  // 4-byte character cut after 2 bytes
}

}  // namespace
}  // namespace cqkv
