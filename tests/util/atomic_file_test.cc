// AtomicFile: the target appears whole or not at all, through a fresh mkstemp file that is never
// a planted symlink, and no temp file survives a failure or SIGTERM.
#include "util/atomic_file.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

namespace fs = std::filesystem;
using testing::ExpectErrorMentioning;

std::string FreshDir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("atomic_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

size_t EntriesIn(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(AtomicFile, WritesAndReplaces) {
  const std::string dir = FreshDir("write");
  const std::string p = dir + "/out.bin";
  WriteFileAtomic(p, "first");
  WriteFileAtomic(p, "second");
  EXPECT_EQ(ReadFile(p), "second");
  EXPECT_EQ(EntriesIn(dir), 1u);  // no temp file left
  struct stat st {};
  ASSERT_EQ(stat(p.c_str(), &st), 0);
  const mode_t mask = umask(022);
  umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask);
}

// The old writer opened PATH.tmp with truncation and followed a symlink planted there.
TEST(AtomicFile, PlantedSymlinksAreNeverWrittenThrough) {
  const std::string dir = FreshDir("symlink");
  const std::string victim = dir + "/victim.txt";
  std::ofstream(victim) << "precious";
  const std::string p = dir + "/logits.bin";
  fs::create_symlink(victim, p + ".tmp");
  fs::create_symlink(victim, dir + "/.logits.bin.tmp");
  WriteFileAtomic(p, "new data");
  EXPECT_EQ(ReadFile(victim), "precious");
  EXPECT_EQ(ReadFile(p), "new data");
  // A symlink at the target itself is replaced by the file, not followed.
  const std::string link = dir + "/link.bin";
  fs::create_symlink(victim, link);
  WriteFileAtomic(link, "x");
  EXPECT_FALSE(fs::is_symlink(link));
  EXPECT_EQ(ReadFile(victim), "precious");
}

TEST(AtomicFile, DevicesAreWrittenInPlace) {
  WriteFileAtomic("/dev/null", "discarded");
  struct stat st {};
  ASSERT_EQ(stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(AtomicFile, AbandonedWriterLeavesNothing) {
  const std::string dir = FreshDir("abandon");
  {
    AtomicFile f(dir + "/x.gguf");
    f.Write("partial");
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_EQ(fs::path(f.temp_path()).parent_path(), fs::path(dir));
  }
  EXPECT_EQ(EntriesIn(dir), 0u);
}

TEST(AtomicFile, BadTargetsNameThePath) {
  ExpectErrorMentioning([] { WriteFileAtomic("", "x"); }, {"output file", "empty path"});
  ExpectErrorMentioning([] { WriteFileAtomic("/nonexistent-dir/out.bin", "x"); },
                        {"/nonexistent-dir/out.bin", "cannot create a temporary file"});
  const std::string dir = FreshDir("isdir");
  fs::create_directories(dir + "/sub");
  ExpectErrorMentioning([&] { WriteFileAtomic(dir + "/sub", "x"); }, {"sub", "is a directory"});
  EXPECT_EQ(EntriesIn(dir), 1u);  // only "sub": no temp file
  ExpectErrorMentioning([&] { WriteFileAtomic(dir + "/", "x"); }, {"names a directory"});
}

TEST(AtomicFile, WriteFailureRemovesTempFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full absent";
  // A full disk: /dev/full cannot host a temp file, so emulate with a file-size limit instead.
  const std::string dir = FreshDir("full");
  auto child = [&dir] {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {};
    lim.rlim_cur = lim.rlim_max = 4096;
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      WriteFileAtomic(dir + "/big.bin", std::string(1 << 20, 'x'));
    } catch (const Error& e) {
      const bool ok =
          EntriesIn(dir) == 0 && std::string(e.what()).find("big.bin") != std::string::npos;
      _exit(ok ? 0 : 5);
    }
    _exit(6);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// SIGTERM while a file is being written removes its temp file and still kills the process.
TEST(AtomicFileDeathTest, SigtermRemovesTempFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string dir = FreshDir("sigterm");
  EXPECT_EXIT(
      {
        AtomicFile f(dir + "/model.gguf");
        f.Write("half of a model");
        raise(SIGTERM);
        _exit(0);  // not reached
      },
      ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_EQ(EntriesIn(dir), 0u);
}

}  // namespace
}  // namespace cqkv
