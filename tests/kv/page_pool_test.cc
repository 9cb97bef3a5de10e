#include "kv/page_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

namespace cqkv {
namespace {

TEST(PagePool, CapacityFromBudget) {
  EXPECT_EQ(PagePool(1000, 10000).capacity(), 10);
  EXPECT_EQ(PagePool(1000, 10999).capacity(), 10);  // whole pages only
  EXPECT_EQ(PagePool(1000, 10).capacity(), 1);      // at least one
  const PagePool p(4096, 3 * 4096);
  EXPECT_EQ(p.page_bytes(), 4096);
  EXPECT_EQ(p.budget_bytes(), 3 * 4096);
  EXPECT_EQ(p.used(), 0);
  EXPECT_EQ(p.free_pages(), 3);
  EXPECT_GT(PagePool::Unbounded(1 << 20)->capacity(), int64_t{1} << 29);
}

TEST(PagePool, AllocFreeReuseAndExhaustion) {
  PagePool p(256, 3 * 256);
  std::set<int32_t> ids;
  for (int i = 0; i < 3; ++i) {
    const int32_t id = p.TryAlloc();
    ASSERT_GE(id, 0);
    EXPECT_TRUE(ids.insert(id).second) << "page handed out twice";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.Data(id)) % 64, 0u) << "pages are 64-byte aligned";
  }
  EXPECT_EQ(p.used(), 3);
  EXPECT_EQ(p.free_pages(), 0);
  EXPECT_EQ(p.TryAlloc(), -1);  // budget spent
  const int32_t back = *ids.begin();
  uint8_t* mem = p.Data(back);
  p.Free(back);
  EXPECT_EQ(p.used(), 2);
  const int32_t again = p.TryAlloc();
  EXPECT_EQ(again, back);         // freed pages are reused ...
  EXPECT_EQ(p.Data(again), mem);  // ... with their memory
  EXPECT_EQ(p.TryAlloc(), -1);
}

TEST(PagePool, PagesAreZeroFilledEachTimeTheyAreHandedOut) {
  PagePool p(128, 128);
  const int32_t id = p.TryAlloc();
  ASSERT_GE(id, 0);
  for (int i = 0; i < 128; ++i) ASSERT_EQ(p.Data(id)[i], 0);
  std::fill(p.Data(id), p.Data(id) + 128, uint8_t{0xab});
  p.Free(id);
  const int32_t again = p.TryAlloc();
  ASSERT_EQ(again, id);
  for (int i = 0; i < 128; ++i) ASSERT_EQ(p.Data(again)[i], 0) << i;
}

// Reserved bytes count against the budget in whole pages: they block page allocations and pages
// block them; releasing them frees the room again.
TEST(PagePool, ReservedBytesShareTheBudget) {
  PagePool p(100, 400);
  EXPECT_TRUE(p.TryReserveBytes(150));  // 2 pages' worth
  EXPECT_EQ(p.reserved_bytes(), 150);
  EXPECT_EQ(p.free_pages(), 2);
  EXPECT_TRUE(p.TryReserveBytes(50));  // still 2 pages (200 bytes)
  EXPECT_EQ(p.free_pages(), 2);
  EXPECT_FALSE(p.TryReserveBytes(201));  // would need 5 pages
  EXPECT_EQ(p.reserved_bytes(), 200);    // unchanged by the refusal
  const int32_t a = p.TryAlloc(), b = p.TryAlloc();
  EXPECT_GE(a, 0);
  EXPECT_GE(b, 0);
  EXPECT_EQ(p.TryAlloc(), -1);  // 2 pages used + 2 reserved
  EXPECT_FALSE(p.TryReserveBytes(1));
  p.ReleaseBytes(200);
  EXPECT_EQ(p.reserved_bytes(), 0);
  EXPECT_EQ(p.free_pages(), 2);
  EXPECT_GE(p.TryAlloc(), 0);
  EXPECT_TRUE(p.TryReserveBytes(100));
  EXPECT_FALSE(p.TryReserveBytes(1));
  p.Free(a);
  EXPECT_TRUE(p.TryReserveBytes(1));
}

}  // namespace
}  // namespace cqkv
