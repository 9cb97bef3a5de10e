// Escaped(): file-provided strings quoted in messages can neither cut nor forge a line.
#include "util/escape.h"

#include <gtest/gtest.h>

#include <string>

namespace cqkv {
namespace {

TEST(Escaped, ControlBytesBecomeEscapes) {
  using namespace std::string_literals;
  EXPECT_EQ(Escaped("a\0b"s), "a\\x00b");
  EXPECT_EQ(Escaped("line\ncqkv: error: forged"), "line\\ncqkv: error: forged");
  EXPECT_EQ(Escaped("\r\t\x7f\x1b[31m"), "\\r\\t\\x7f\\x1b[31m");
  EXPECT_EQ(Escaped("back\\slash"), "back\\\\slash");
}

TEST(Escaped, KeepsPrintableAndValidUtf8) {
  EXPECT_EQ(Escaped("blk.0.attn_q.weight"), "blk.0.attn_q.weight");
  EXPECT_EQ(Escaped("\xe2\x96\x81the caf\xc3\xa9 \xf0\x9f\x98\x80"),
            "\xe2\x96\x81the caf\xc3\xa9 \xf0\x9f\x98\x80");
}

TEST(Escaped, InvalidUtf8BytesAreEscaped) {
  EXPECT_EQ(Escaped("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(Escaped("\xc3"), "\\xc3");                    // cut-off sequence
  EXPECT_EQ(Escaped("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(Escaped("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
}

TEST(EscapedLine, KeepsBackslashesButNotNewlines) {
  EXPECT_EQ(EscapedLine("file 'a\\nb': bad\nsecond"), "file 'a\\nb': bad\\nsecond");
}

TEST(Escaped, LongInputIsCutAndSized) {
  const std::string big(1 << 20, 'x');
  const std::string e = Escaped(big);
  EXPECT_EQ(e, std::string(256, 'x') + "...(1048576 bytes)");
  EXPECT_EQ(Escaped("abcdef", 3), "abc...(6 bytes)");
}

}  // namespace
}  // namespace cqkv
