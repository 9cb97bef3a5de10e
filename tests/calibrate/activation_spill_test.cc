#include "calibrate/activation_spill.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

// The same appends read back from memory and from disk: concatenated in append order, weights
// optional, a problem never appended comes back empty, and each problem is released once taken.
TEST(ActivationSpill, RoundTripsInMemoryAndOnDisk) {
  for (const std::string& dir : {std::string(), ::testing::TempDir()}) {
    std::string path;
    {
      ActivationSpill spill(3, dir);
      path = spill.path();
      EXPECT_EQ(path.empty(), dir.empty());
      spill.Append(0, std::vector<float>{1, 2, 3}, std::vector<float>{9});
      spill.Append(2, std::vector<float>{-1}, {});
      spill.Append(0, std::vector<float>{4, 5, 6}, std::vector<float>{8});
      EXPECT_EQ(spill.bytes_written(), dir.empty() ? 0 : 9 * 4);
      std::vector<float> x, w;
      spill.Take(0, &x, &w);
      EXPECT_EQ(x, (std::vector<float>{1, 2, 3, 4, 5, 6}));
      EXPECT_EQ(w, (std::vector<float>{9, 8}));
      spill.Take(1, &x, &w);
      EXPECT_TRUE(x.empty() && w.empty());
      spill.Take(2, &x, &w);
      EXPECT_EQ(x, std::vector<float>{-1});
      EXPECT_TRUE(w.empty());
      spill.Take(0, &x, &w);  // released
      EXPECT_TRUE(x.empty() && w.empty());
      if (!dir.empty()) {
        EXPECT_TRUE(std::filesystem::is_directory(path));
      }
    }
    if (!dir.empty()) {
      EXPECT_FALSE(std::filesystem::exists(path)) << path;
    }
  }
}

TEST(ActivationSpill, DirectoryIsRemovedWithItsFilesAndBadDirectoryIsNamed) {
  std::string path;
  {
    ActivationSpill spill(2, ::testing::TempDir());
    path = spill.path();
    spill.Append(1, std::vector<float>(1000, 0.5f), std::vector<float>(10, 1.0f));
    EXPECT_FALSE(std::filesystem::is_empty(path));
  }  // never taken: the files go with the directory
  EXPECT_FALSE(std::filesystem::exists(path));
  const std::string missing = ::testing::TempDir() + "/no/such/dir";
  testing::ExpectErrorMentioning([&] { ActivationSpill s(1, missing); }, {missing});
}

}  // namespace
}  // namespace cqkv
