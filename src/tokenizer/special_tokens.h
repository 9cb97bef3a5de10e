// Splitting special tokens out of text before it is tokenized, as llama.cpp's
// tokenizer_st_partition does: control, unknown and user-defined tokens are matched by their
// exact text, longest token first, and the text between them goes to the encoder.
#pragma once

#include <bitset>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace cqkv::tokenizer_internal {

struct Fragment {
  size_t begin = 0;  // plain text: text[begin, begin + len)
  size_t len = 0;
  int32_t token = -1;  // >= 0: this special token instead of text
};

class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;
  // Keeps views into v.tokens: the vocabulary must outlive the splitter and not change.
  explicit SpecialTokenSplitter(const Vocab& v);

  // Fragments of `text` in order. User-defined tokens are always split out (llama.cpp and
  // Hugging Face do so even without special-token parsing); control and unknown tokens only
  // when `parse_special`.
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string_view text;
    int32_t id;
    bool user_defined;
  };
  // Entries that occur in `text` at all, longest first: one pass over the text replaces a full
  // search per special token (Llama-3 has 256), which mattered on whole files.
  std::vector<const Entry*> Present(std::string_view text, bool parse_special) const;

  std::vector<Entry> entries_;  // longest first, then by id
  bool any_user_defined_ = false;
  // Entries by their first two bytes (one-byte entries by their byte), as index ranges into
  // by_prefix_.
  std::bitset<65536> has_prefix2_;
  std::bitset<256> has_single_;
  std::vector<std::pair<uint32_t, uint32_t>> by_prefix_;  // (prefix key, entry index), sorted
};

}  // namespace cqkv::tokenizer_internal
