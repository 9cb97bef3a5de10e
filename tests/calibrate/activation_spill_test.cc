#include "calibrate/activation_spill.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "test_util.h"
#include "util/error.h"
#include "util/thread_pool.h"

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

// Ranged reads (what the fit uses to take one channel group at a time) see the appends in order,
// from several threads at once, and a read past the end names the problem or file.
TEST(ActivationSpill, ReadsRangesAndReleases) {
  for (const std::string& dir : {std::string(), ::testing::TempDir()}) {
    ActivationSpill spill(2, dir);
    std::vector<float> all(1000);
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<float>(i) * 0.5f;
    spill.Append(1, std::span<const float>(all).first(600), std::vector<float>{7, 8});
    spill.Append(1, std::span<const float>(all).subspan(600), std::vector<float>{9});
    EXPECT_EQ(spill.Size(1, false), 1000);
    EXPECT_EQ(spill.Size(1, true), 3);
    EXPECT_EQ(spill.Size(0, false), 0);
    ThreadPool pool(2);
    pool.ParallelFor(10, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t part = b; part < e; ++part) {
        std::vector<float> got(100);
        spill.Read(1, false, part * 100, got);
        EXPECT_TRUE(std::equal(got.begin(), got.end(), all.begin() + part * 100)) << part;
      }
    });
    std::vector<float> w(2);
    spill.Read(1, true, 1, w);
    EXPECT_EQ(w, (std::vector<float>{8, 9}));
    testing::ExpectErrorMentioning([&] { spill.Read(1, true, 2, w); },
                                   {dir.empty() ? "problem 1" : spill.path() + "/1.w.f32"});
    spill.Release(1);
    EXPECT_EQ(spill.Size(1, false), 0);
    EXPECT_EQ(spill.Size(1, true), 0);
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
