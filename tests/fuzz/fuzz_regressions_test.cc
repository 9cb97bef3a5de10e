// Every input a fuzz target ever failed on (tests/fuzz/regressions/<target>/<finding>) replayed
// through the same entry (fuzz/fuzz_entries.h): each must now be rejected with cqkv::Error. Run
// in the sanitizer build too (.ci/run), where a memory error is a failure rather than luck.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "fuzz/fuzz_entries.h"
#include "util/error.h"

namespace cqkv::fuzz {
namespace {

namespace fs = std::filesystem;

std::string ReadBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The files of `dir`, sorted so failures are reported in a stable order.
std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

const fs::path kRegressions = fs::path(CQKV_SOURCE_DIR) / "tests/fuzz/regressions";

TEST(FuzzRegressions, EveryFindingIsRejectedWithError) {
  int replayed = 0;
  for (const auto& dir : fs::directory_iterator(kRegressions)) {
    if (!dir.is_directory()) continue;
    const EntryFn entry = FindEntry(dir.path().filename().string());
    for (const fs::path& file : FilesIn(dir.path())) {
      SCOPED_TRACE(file.string());
      EXPECT_THROW(entry(ReadBytes(file)), Error);
      ++replayed;
    }
  }
  EXPECT_GT(replayed, 0) << "no findings under " << kRegressions;
}

// The committed hand-made seeds are accepted or rejected with cqkv::Error, never anything else.
TEST(FuzzRegressions, SeedsAreHandled) {
  const fs::path seeds = fs::path(CQKV_SOURCE_DIR) / "fuzz/seeds";
  for (const Entry& e : Entries()) {
    for (const fs::path& file : FilesIn(seeds / e.name)) {
      SCOPED_TRACE(file.string());
      try {
        e.run(ReadBytes(file));
      } catch (const Error&) {
      }
    }
  }
}

// One libFuzzer target per entry and no target without one (FindEntry at start-up would abort).
TEST(FuzzRegressions, EveryEntryHasATarget) {
  std::set<std::string> targets;
  for (const fs::path& file : FilesIn(fs::path(CQKV_SOURCE_DIR) / "fuzz/targets")) {
    std::string name = file.filename().string();
    ASSERT_TRUE(name.ends_with("_fuzz.cc")) << name;
    targets.insert(name.substr(0, name.size() - 8));
  }
  std::set<std::string> entries;
  for (const Entry& e : Entries()) entries.insert(e.name);
  EXPECT_EQ(targets, entries);
  EXPECT_THROW(FindEntry("no-such-target"), Error);
}

}  // namespace
}  // namespace cqkv::fuzz
