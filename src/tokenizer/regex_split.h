// The regex step of byte-level BPE pre-tokenization: a compiled PCRE2 pattern (Unicode classes,
// JIT) that cuts text into words, keeping both the matches and the gaps between them, as
// llama.cpp's unicode_regex_split and Hugging Face's Split(behavior=Isolated) do.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cqkv::tokenizer_internal {

// `pattern` with \s and \S spelled as Unicode White_Space (what Python's and Rust's regex engines
// and llama.cpp use). PCRE2's own \s also matches U+180E, which Unicode dropped from White_Space.
std::string SpellWhitespace(std::string_view pattern);

// Pieces of text as [begin, length) byte ranges.
using Spans = std::vector<std::pair<size_t, size_t>>;

// PCRE2 match scratch for one caller at a time (opaque, so pcre2.h stays out of this header).
class MatchBuffer {
 public:
  MatchBuffer();
  ~MatchBuffer();
  MatchBuffer(const MatchBuffer&) = delete;
  MatchBuffer& operator=(const MatchBuffer&) = delete;
  void* get() const { return data_; }

 private:
  void* data_;
};

class RegexSplitter {
 public:
  // Throws cqkv::Error quoting the pattern when it does not compile.
  explicit RegexSplitter(std::string_view pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends to `out` the pieces of text[begin, end): every match and every gap between matches
  // as a piece of its own, so no byte is ever dropped. The pattern sees only [begin, end), as
  // each Split step of a Hugging Face pre-tokenizer sees only the piece it is given.
  void Split(std::string_view text, size_t begin, size_t end, MatchBuffer& match, Spans& out) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string pattern_;
};

// Applies `steps` in order, each re-splitting the pieces of the previous one.
Spans SplitAll(std::string_view text, const std::vector<std::unique_ptr<RegexSplitter>>& steps);

}  // namespace cqkv::tokenizer_internal
