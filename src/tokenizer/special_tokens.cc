// Special-token partition. The order of the passes (longest token first, each over all the text
// still plain) is llama.cpp's, so overlapping candidates resolve the same way.

#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace cqkv::tokenizer_internal {
namespace {

uint32_t Prefix2(std::string_view s, size_t i) {
  return (uint32_t{static_cast<uint8_t>(s[i])} << 8) | static_cast<uint8_t>(s[i + 1]);
}
constexpr uint32_t kSingle = 0x10000;  // keys of one-byte entries: kSingle | byte

}  // namespace

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& v) {
  for (size_t i = 0; i < v.tokens.size() && i < v.types.size(); ++i) {
    const TokenType t = v.types[i];
    if (t != TokenType::kControl && t != TokenType::kUnknown && t != TokenType::kUserDefined) {
      continue;
    }
    if (v.tokens[i].empty()) continue;  // matches everywhere; llama.cpp would loop on it
    entries_.push_back(Entry{v.tokens[i], static_cast<int32_t>(i), t == TokenType::kUserDefined});
  }
  for (const Entry& e : entries_) any_user_defined_ = any_user_defined_ || e.user_defined;
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.text.size() != b.text.size() ? a.text.size() > b.text.size() : a.id < b.id;
  });
  for (size_t e = 0; e < entries_.size(); ++e) {
    const std::string_view s = entries_[e].text;
    const uint32_t key = s.size() == 1 ? kSingle | static_cast<uint8_t>(s[0]) : Prefix2(s, 0);
    if (s.size() == 1) {
      has_single_.set(key & 0xFF);
    } else {
      has_prefix2_.set(key);
    }
    by_prefix_.emplace_back(key, static_cast<uint32_t>(e));
  }
  std::sort(by_prefix_.begin(), by_prefix_.end());
}

std::vector<const SpecialTokenSplitter::Entry*> SpecialTokenSplitter::Present(
    std::string_view text, bool parse_special) const {
  std::vector<bool> found(entries_.size(), false);
  auto check = [&](uint32_t key, size_t at) {
    auto it = std::lower_bound(by_prefix_.begin(), by_prefix_.end(), std::pair{key, 0u});
    for (; it != by_prefix_.end() && it->first == key; ++it) {
      const Entry& e = entries_[it->second];
      if (found[it->second] || (!parse_special && !e.user_defined)) continue;
      if (text.compare(at, e.text.size(), e.text) == 0) found[it->second] = true;
    }
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (has_single_[static_cast<uint8_t>(text[i])])
      check(kSingle | static_cast<uint8_t>(text[i]), i);
    if (i + 1 < text.size() && has_prefix2_[Prefix2(text, i)]) check(Prefix2(text, i), i);
  }
  std::vector<const Entry*> present;
  for (size_t e = 0; e < entries_.size(); ++e) {
    if (found[e]) present.push_back(&entries_[e]);
  }
  return present;
}

std::vector<Fragment> SpecialTokenSplitter::Partition(std::string_view text,
                                                      bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back(Fragment{0, text.size(), -1});
  if (entries_.empty() || (!parse_special && !any_user_defined_)) return frags;
  std::vector<Fragment> next;
  for (const Entry* e : Present(text, parse_special)) {
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.begin;
      const size_t end = f.begin + f.len;
      while (true) {
        const size_t at = text.substr(0, end).find(e->text, pos);
        if (at == std::string_view::npos) break;
        if (at > pos) next.push_back(Fragment{pos, at - pos, -1});
        next.push_back(Fragment{at, 0, e->id});
        pos = at + e->text.size();
      }
      if (pos < end) next.push_back(Fragment{pos, end - pos, -1});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace cqkv::tokenizer_internal
