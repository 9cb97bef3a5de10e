// ReadInputFile: only regular files within a size limit (or '-' when allowed) are read; devices,
// FIFOs and directories are clear errors, not endless reads.
#include "util/input_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace cqkv {
namespace {

using testing::ExpectErrorMentioning;

std::string Temp(const std::string& name) { return ::testing::TempDir() + "/input_" + name; }

TEST(ReadInputFile, ReadsRegularFileWithinLimit) {
  const std::string p = Temp("ok.txt");
  std::ofstream(p, std::ios::binary) << std::string("a\0b", 3);
  EXPECT_EQ(ReadInputFile(p, 3, "--data"), std::string("a\0b", 3));
  EXPECT_EQ(ReadFile(p), std::string("a\0b", 3));
}

TEST(ReadInputFile, RefusesFileOverLimitBeforeReading) {
  const std::string p = Temp("big.txt");
  std::ofstream(p, std::ios::binary) << std::string(4097, 'x');
  ExpectErrorMentioning([&] { ReadInputFile(p, 4096, "--text-file"); },
                        {"--text-file", "big.txt", "4097 bytes", "limit of 4096 bytes"});
}

TEST(ReadInputFile, DevZeroIsRefusedNotReadForever) {
  ExpectErrorMentioning([] { ReadInputFile("/dev/zero", kMaxTextInputBytes, "--data"); },
                        {"--data", "/dev/zero", "not a regular file"});
}

TEST(ReadInputFile, DirectoryIsNamedAsSuch) {
  const std::string d = Temp("dir");
  std::filesystem::create_directories(d);
  ExpectErrorMentioning([&] { ReadInputFile(d, 100, "--data"); },
                        {"--data", "input_dir", "is a directory"});
}

TEST(ReadInputFile, FifoWithoutWriterDoesNotBlock) {
  const std::string f = Temp("fifo");
  std::filesystem::remove(f);
  ASSERT_EQ(mkfifo(f.c_str(), 0600), 0);
  ExpectErrorMentioning([&] { ReadInputFile(f, 100, "--tokenizer"); },
                        {"--tokenizer", "not a regular file"});
}

TEST(ReadInputFile, MissingFileAndEscapedName) {
  ExpectErrorMentioning([] { ReadInputFile("/nonexistent/a\nb", 100, "--data"); },
                        {"--data", "'/nonexistent/a\\nb'", "cannot open"});
  ExpectErrorMentioning([] { ReadInputFile("", 100, "--data"); }, {"--data", "no file name"});
}

TEST(ReadInputFile, StdinOnlyWhenAllowedAndBounded) {
  // '-' without allow_stdin is a file name like any other.
  ExpectErrorMentioning([] { ReadInputFile("-", 100, "--data"); }, {"cannot open"});
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int saved = dup(STDIN_FILENO);
  ASSERT_EQ(write(fds[1], "hello world", 11), 11);
  close(fds[1]);
  dup2(fds[0], STDIN_FILENO);
  close(fds[0]);
  EXPECT_THROW(ReadInputFile("-", 5, "--text-file", /*allow_stdin=*/true), Error);
  dup2(saved, STDIN_FILENO);
  close(saved);
  ASSERT_EQ(pipe(fds), 0);
  const int saved2 = dup(STDIN_FILENO);
  ASSERT_EQ(write(fds[1], "hello", 5), 5);
  close(fds[1]);
  dup2(fds[0], STDIN_FILENO);
  close(fds[0]);
  EXPECT_EQ(ReadInputFile("-", 5, "--text-file", true), "hello");
  dup2(saved2, STDIN_FILENO);
  close(saved2);
}

}  // namespace
}  // namespace cqkv
