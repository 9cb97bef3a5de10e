#include "kv/page_pool.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>
#include <new>

#include "util/error.h"

namespace cqkv {
namespace {
constexpr std::align_val_t kPageAlign{64};
}  // namespace

void PagePool::AlignedFree::operator()(uint8_t* p) const { ::operator delete[](p, kPageAlign); }

PagePool::PagePool(int64_t page_bytes, int64_t budget_bytes)
    : page_bytes_(page_bytes),
      budget_bytes_(budget_bytes),
      capacity_(std::max<int64_t>(1, budget_bytes / std::max<int64_t>(1, page_bytes))) {
  CQKV_CHECK(page_bytes > 0, "KV page pool: page size must be positive, got {} bytes", page_bytes);
}

std::shared_ptr<PagePool> PagePool::Unbounded(int64_t page_bytes) {
  // Page ids are int32; the budget only bounds how many exist.
  const int64_t max_pages = std::numeric_limits<int32_t>::max() / 2;
  const int64_t budget = page_bytes > std::numeric_limits<int64_t>::max() / max_pages
                             ? std::numeric_limits<int64_t>::max()
                             : page_bytes * max_pages;
  return std::make_shared<PagePool>(page_bytes, budget);
}

int64_t PagePool::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

int64_t PagePool::reserved_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reserved_bytes_;
}

int64_t PagePool::free_pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capacity_ - used_ - PagesForBytes(reserved_bytes_);
}

int32_t PagePool::TryAlloc() {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ + PagesForBytes(reserved_bytes_) >= capacity_) return -1;
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<int32_t>(pages_.size());
    pages_.emplace_back();
  }
  auto& p = pages_[static_cast<size_t>(id)];
  if (!p) {
    p.reset(static_cast<uint8_t*>(::operator new[](static_cast<size_t>(page_bytes_), kPageAlign)));
  }
  std::memset(p.get(), 0, static_cast<size_t>(page_bytes_));
  ++used_;
  return id;
}

uint8_t* PagePool::Data(int32_t page) const {
  std::lock_guard<std::mutex> lock(mu_);
  assert(page >= 0 && static_cast<size_t>(page) < pages_.size());
  return pages_[static_cast<size_t>(page)].get();
}

void PagePool::Free(int32_t page) {
  std::lock_guard<std::mutex> lock(mu_);
  assert(page >= 0 && static_cast<size_t>(page) < pages_.size());
  free_.push_back(page);
  --used_;
}

bool PagePool::TryReserveBytes(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ + PagesForBytes(reserved_bytes_ + bytes) > capacity_) return false;
  reserved_bytes_ += bytes;
  return true;
}

void PagePool::ReleaseBytes(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  reserved_bytes_ -= bytes;
}

}  // namespace cqkv
