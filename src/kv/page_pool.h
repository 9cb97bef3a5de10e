// Fixed-size KV pages from one byte budget, shared by every sequence of an engine (vLLM-style
// paging): a sequence's cache is a table of page ids, page j holding its tokens
// [j * page_tokens, (j + 1) * page_tokens) for every layer, K and V. Pages return to the pool
// when a sequence ends, so memory follows the tokens actually cached, never a claimed capacity.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace cqkv {

class PagePool {
 public:
  // As many pages of page_bytes as fit budget_bytes (at least one). Page memory is allocated on
  // first use and kept for reuse; a page is zero-filled each time it is handed out.
  PagePool(int64_t page_bytes, int64_t budget_bytes);
  // A pool with no budget (single-sequence tools and tests): pages are made as needed.
  static std::shared_ptr<PagePool> Unbounded(int64_t page_bytes);

  int64_t page_bytes() const { return page_bytes_; }
  int64_t capacity() const { return capacity_; }  // pages the budget allows
  int64_t budget_bytes() const { return budget_bytes_; }
  int64_t used() const;
  int64_t free_pages() const;
  // Bytes of fixed per-sequence buffers (fp16 windows, staging) charged to the budget.
  int64_t reserved_bytes() const;

  // Whole pages' worth of `bytes`: how the budget counts bytes held outside pages.
  int64_t PagesForBytes(int64_t bytes) const { return (bytes + page_bytes_ - 1) / page_bytes_; }

  // A zeroed page, or -1 when the budget is spent. Page memory is 64-byte aligned (cache lines
  // and vector loads), so formats that keep their regions at 64-byte offsets get aligned rows.
  int32_t TryAlloc();
  void Free(int32_t page);
  // The memory of a page; stable until the pool is destroyed (callers keep the pointer).
  uint8_t* Data(int32_t page) const;
  // Charges / returns bytes outside pages against the same budget (whole pages' worth).
  bool TryReserveBytes(int64_t bytes);
  void ReleaseBytes(int64_t bytes);

 private:
  const int64_t page_bytes_;
  const int64_t budget_bytes_;
  const int64_t capacity_;
  mutable std::mutex mu_;
  struct AlignedFree {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t[], AlignedFree>> pages_;  // [id]: null until first use
  std::vector<int32_t> free_;                                   // ids ready for reuse
  int64_t used_ = 0;
  int64_t reserved_bytes_ = 0;
};

}  // namespace cqkv
