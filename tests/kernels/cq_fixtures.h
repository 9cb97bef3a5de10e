// Shared fixtures of the CQ kernel tests (attn_cq_test.cc, attn_cq_values_test.cc): random packed
// codes and tables for one KV head inside a stream of several, the same codes cut into pages,
// and an attention state with its normalised output.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "kernels/attn_cq.h"

namespace cqkv::testing {

// Random codes and N(0, 1) tables for KV head n_kv - 1 of a stream of n_kv heads: codes of
// `bits` bits packed little-endian (4 spare bytes), tables (groups of all heads, c, 2^b).
struct CqFixture {
  int c, bits, hd, n_kv, kvh;
  std::vector<uint8_t> k_codes, v_codes;
  std::vector<float> k_table, v_table;
  CqHeadView view;

  CqFixture(int c_, int bits_, int hd_, int64_t n_tokens, int seed, int n_kv_ = 2)
      : c(c_), bits(bits_), hd(hd_), n_kv(n_kv_), kvh(n_kv_ - 1) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    const int groups = hd / c;
    const int64_t n_groups = int64_t{n_kv} * groups;
    const int64_t k = int64_t{1} << bits;
    const int64_t n_codes = n_tokens * n_groups;
    k_codes.assign(static_cast<size_t>((n_codes * bits + 7) / 8 + 4), 0);
    v_codes = k_codes;
    for (auto* codes : {&k_codes, &v_codes}) {
      for (int64_t i = 0; i < n_codes; ++i) {
        const uint64_t code = rng() & (k - 1);
        for (int bit = 0; bit < bits; ++bit) {
          const uint64_t pos = static_cast<uint64_t>(i) * bits + bit;
          (*codes)[pos >> 3] |= static_cast<uint8_t>(((code >> bit) & 1) << (pos & 7));
        }
      }
    }
    k_table.resize(static_cast<size_t>(n_groups * c * k));
    v_table.resize(k_table.size());
    for (auto& x : k_table) x = nd(rng);
    for (auto& x : v_table) x = nd(rng);
    Point();
  }
  // (Re)points the view at this fixture's buffers (after a copy or a change of codes).
  void Point() {
    const int groups = hd / c;
    const int64_t k = int64_t{1} << bits;
    view = CqHeadView{};
    view.k_codes = k_codes.data();
    view.v_codes = v_codes.data();
    view.n_groups = int64_t{n_kv} * groups;
    view.g0 = kvh * groups;
    view.groups = groups;
    view.c = c;
    view.bits = bits;
    view.k_table = k_table.data() + int64_t{view.g0} * c * k;
    view.v_table = v_table.data() + int64_t{view.g0} * c * k;
  }
};

// The fixture's streams cut into pages of `page_tokens` tokens, each its own allocation with 4
// spare bytes (set, to show they are never taken for codes).
struct CqPaged {
  std::vector<std::vector<uint8_t>> k, v;
  std::vector<const uint8_t*> kp, vp;
  CqHeadView view;

  CqPaged(const CqFixture& f, int64_t page_tokens, int64_t n_tokens) : view(f.view) {
    const int64_t page_bytes = page_tokens * f.view.n_groups * f.bits / 8;
    for (int64_t p = 0; p * page_tokens < n_tokens; ++p) {
      for (auto [src, dst] : {std::pair{&f.k_codes, &k}, std::pair{&f.v_codes, &v}}) {
        std::vector<uint8_t> page(static_cast<size_t>(page_bytes + 4), 0xff);
        const int64_t from = p * page_bytes;
        const int64_t n = std::min<int64_t>(page_bytes, static_cast<int64_t>(src->size()) - from);
        std::copy_n(src->begin() + from, n, page.begin());
        dst->push_back(std::move(page));
      }
      kp.push_back(k.back().data());
      vp.push_back(v.back().data());
    }
    view.k_codes = view.v_codes = nullptr;
    view.k_pages = kp.data();
    view.v_pages = vp.data();
    view.page_tokens = page_tokens;
  }
};

// An empty attention state of `heads` heads and its normalised output acc / l.
struct CqState {
  std::vector<float> m, l, acc;
  int hd;
  CqState(int heads, int hd_) : m(heads), l(heads), acc(static_cast<size_t>(heads) * hd_), hd(hd_) {
    ResetAttnState(view());
  }
  AttnState view() { return {m.data(), l.data(), acc.data(), static_cast<int>(m.size()), hd}; }
  std::vector<double> Out() const {
    std::vector<double> o(acc.size());
    for (size_t i = 0; i < o.size(); ++i) o[i] = acc[i] / l[i / hd];
    return o;
  }
};

}  // namespace cqkv::testing
