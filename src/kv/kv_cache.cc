#include "kv/kv_cache.h"

#include <algorithm>
#include <limits>

#include "kv/cq_cache.h"
#include "kv/dense_cache.h"
#include "kv/int_cache.h"
#include "kv/kivi_cache.h"
#include "kv/mixed_cache.h"
#include "kv/nf_cache.h"
#include "kv/tq_cache.h"
#include "util/error.h"

namespace cqkv {

void KvCache::AttendPartial(int, int, const float*, int, int64_t, int64_t, float*, float*,
                            float*) const {
  Fail("kv cache {}: no partial (decode) attention for this format", format());
}

void KvCache::PrepareQuery(int, int, const float* q_group, int group, float* prepared) const {
  std::copy_n(q_group, int64_t{group} * shape_.head_dim, prepared);
}

int64_t KvCache::ExactPrefillRows(int) const { return std::numeric_limits<int64_t>::max(); }

void KvCache::ReadRows(int, KvPart, int64_t, int64_t, int, float*) const {
  Fail("kv cache {}: no row access for this format", format());
}

KvCache::KvCache(const KvShape& shape, std::shared_ptr<PagePool> pool)
    : shape_(shape), pool_(std::move(pool)) {
  CQKV_CHECK(shape.page_tokens > 0 && shape.page_tokens % 256 == 0,
             "kv cache: page size of {} tokens is not a positive multiple of 256",
             shape.page_tokens);
}

KvCache::~KvCache() {
  ReleasePages();
  if (fixed_charged_ > 0) pool_->ReleaseBytes(fixed_charged_);
}

bool KvCache::TryReserve(int64_t n_tokens) {
  const int64_t need = PagesFor(n_tokens);
  if (need <= pages_held()) return true;
  CQKV_CHECK(!borrowed_, "kv cache {}: a sub-cache needs page {} before its composite lent it",
             format(), need - 1);
  if (!pool_) pool_ = PagePool::Unbounded(PageBytes());
  CQKV_CHECK(pool_->page_bytes() == PageBytes(),
             "kv cache {}: pool pages of {} bytes, format needs {}", format(), pool_->page_bytes(),
             PageBytes());
  std::vector<int32_t> got;
  for (int64_t i = pages_held(); i < need; ++i) {
    const int32_t id = pool_->TryAlloc();
    if (id < 0) {
      for (int32_t g : got) pool_->Free(g);
      return false;
    }
    got.push_back(id);
  }
  for (int32_t id : got) {
    pages_.push_back(id);
    page_data_.push_back(pool_->Data(id));
  }
  return true;
}

bool KvCache::TryAdmit(int64_t n_tokens) {
  if (!pool_) pool_ = PagePool::Unbounded(PageBytes());
  const int64_t fixed = fixed_charged_ > 0 ? 0 : FixedBytes();
  if (fixed > 0 && !pool_->TryReserveBytes(fixed)) return false;
  if (!TryReserve(n_tokens)) {
    if (fixed > 0) pool_->ReleaseBytes(fixed);
    return false;
  }
  fixed_charged_ += fixed;
  return true;
}

uint8_t* KvCache::EnsurePage(int64_t t) {
  const int64_t page = t / shape_.page_tokens;
  if (page >= pages_held() && !TryReserve(t + 1)) {
    throw Error(fmt::format("kv cache {}: the KV memory budget ({} pages of {} bytes) is spent",
                            format(), pool_->capacity(), pool_->page_bytes()),
                ErrorCode::kResourceExhausted);
  }
  return PageData(page);
}

void KvCache::LendPages(KvCache& child, int64_t offset) const {
  CQKV_CHECK(child.borrowed_ || child.pages_held() == 0,
             "kv cache {}: cannot lend pages to a sub-cache holding its own", format());
  child.borrowed_ = true;
  for (size_t i = child.pages_.size(); i < pages_.size(); ++i) {
    child.pages_.push_back(-1);
    child.page_data_.push_back(page_data_[i] + offset);
  }
}

void KvCache::ReleasePages() {
  if (!borrowed_) {
    for (int32_t id : pages_) pool_->Free(id);
  }
  pages_.clear();
  page_data_.clear();
}

std::unique_ptr<KvCache> MakeKvCache(const KvSpec& spec, const KvShape& shape) {
  switch (spec.family) {
    case KvFamily::kFp32:
      return MakeFp32Cache(shape);
    case KvFamily::kFp16:
      return MakeFp16Cache(shape);
    case KvFamily::kCq:
      return MakeCqCache(spec, shape);
    case KvFamily::kIntToken:
    case KvFamily::kIntChannel:
      return MakeIntCache(spec, shape);
    case KvFamily::kNf:
      return MakeNfCache(spec, shape);
    case KvFamily::kKivi:
      return MakeKiviCache(spec, shape);
    case KvFamily::kTq:
      return MakeTqCache(spec, shape);
    case KvFamily::kMixed:
      return MakeMixedCache(spec, shape);
  }
  Fail("KV format '{}': no cache for this family", spec.text);
}

std::unique_ptr<KvCache> MakeKvCache(const std::string& spec, const KvShape& shape) {
  return MakeKvCache(ParseKvSpec(spec), shape);
}

std::string KvFormatsHelp() {
  return "fp32  full precision (quality reference)\n"
         "fp16  IEEE half (speed baseline)\n"
         "cq:PATH[:r<R>]         coupled quantization with the codebooks in PATH (cqkv "
         "calibrate): b/c bits per channel; last R tokens also kept fp16 (default 0)\n"
         "cq:PATH:fs[:r<R>]      the same with fast-scan keys (post-RoPE 4/8-bit codebooks): "
         "approximate key scores from 8-bit tables, exact softmax max\n"
         "int<B>-token[:g<G>]    B=1,2,4,8 bits per channel; per token, groups of G channels "
         "(default head_dim), fp16 scale+min: B+32/G bits\n"
         "int<B>-channel[:g<G>]  per channel, groups of G tokens (default 128), fp16 scale+min: "
         "B+32/G bits\n"
         "int<B>-*:hadamard      either int layout on rows rotated per head by the normalised "
         "Walsh-Hadamard matrix (as llama.cpp; head_dim a power of two), same bits\n"
         "nf<B>[:g<G>]           B=2,3,4; NormalFloat levels, per token, groups of G channels "
         "(default head_dim), fp16 absmax: B+16/G bits\n"
         "kivi<B>[:g<G>][:r<R>]  B=1,2,4; KIVI: keys per channel over G tokens, values per token "
         "over G channels (default 32), last R tokens fp16 (default 128)\n"
         "tq<B>[:qjl]            B=2,3,4; TurboQuant-style: randomized-Hadamard rotation, B-bit "
         "Lloyd-Max codes + fp16 norm per head row: B+16/head_dim bits; :qjl keys use B-1 bits "
         "+ a 1-bit QJL residual sketch + fp16 residual norm\n"
         "FMT;FMT@LAYERS;...      mixed: per-layer formats, LAYERS = N, N-M, firstN, lastN "
         "(comma list, 0-based), the part without @ for the other layers; any FMT may be "
         "K=FMT,V=FMT (e.g. 'int2-token;fp16@first1,last1', 'K=int4-token,V=int2-token')";
}

}  // namespace cqkv
