// PCRE2 pre-tokenizer splitting. pcre2_code is immutable after JIT compilation and safe to share
// between threads; match data is per call.

#include "tokenizer/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace cqkv::tokenizer_internal {
namespace {

constexpr std::string_view kWhitespace =
    R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string PcreMessage(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof(msg));
  return reinterpret_cast<const char*>(msg);
}

}  // namespace

std::string SpellWhitespace(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      if (e == 's') {
        out += in_class ? std::string(kWhitespace) : "[" + std::string(kWhitespace) + "]";
      } else if (e == 'S') {
        // A negated class cannot be spliced into another class; no known pattern needs it.
        CQKV_CHECK(!in_class, "tokenizer: pre-tokenizer regex '{}' uses \\S inside a class", p);
        out += "[^" + std::string(kWhitespace) + "]";
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

struct RegexSplitter::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(std::string_view pattern)
    : code_(std::make_unique<Code>()), pattern_(pattern) {
  const std::string spelled = SpellWhitespace(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // UCP makes \p{L}, \d, \b etc. Unicode-aware; MATCH_INVALID_UTF lets arbitrary bytes through
  // (they end up in the gaps between matches, which Split keeps as words); DOLLAR_ENDONLY gives
  // '$' the end-of-piece meaning it has in Rust's regex.
  code_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spelled.data()), spelled.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &err,
                    &err_offset, nullptr);
  CQKV_CHECK(code_->code != nullptr,
             "tokenizer: pre-tokenizer regex '{}' does not compile at offset {}: {}", pattern,
             err_offset, PcreMessage(err));
  // Without JIT the interpreter still works, only slower.
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);
}

RegexSplitter::~RegexSplitter() = default;

MatchBuffer::MatchBuffer() : data_(pcre2_match_data_create(1, nullptr)) {
  CQKV_CHECK(data_ != nullptr, "tokenizer: out of memory for regex match data");
}

MatchBuffer::~MatchBuffer() { pcre2_match_data_free(static_cast<pcre2_match_data*>(data_)); }

void RegexSplitter::Split(std::string_view text, size_t begin, size_t end, MatchBuffer& match,
                          Spans& out) const {
  auto* md = static_cast<pcre2_match_data*>(match.get());
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
  const size_t len = end - begin;
  size_t gap = 0;     // start of the text not yet emitted
  size_t search = 0;  // where the next match may start
  while (search < len) {
    const int rc = pcre2_match(code_->code, subject, len, search, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    CQKV_CHECK(rc >= 0, "tokenizer: pre-tokenizer regex '{}' failed at byte {}: {}", pattern_,
               begin + search, PcreMessage(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[0] > gap) out.emplace_back(begin + gap, ov[0] - gap);
    if (ov[1] > ov[0]) out.emplace_back(begin + ov[0], ov[1] - ov[0]);
    gap = ov[1];
    // An empty match is only a cut point; step over one character so the search progresses.
    search = ov[1];
    if (ov[1] == ov[0] && search < len) {
      search += std::min(len - search, Utf8Len(text[begin + search]));
    }
  }
  if (gap < len) out.emplace_back(begin + gap, len - gap);
}

Spans SplitAll(std::string_view text, const std::vector<std::unique_ptr<RegexSplitter>>& steps) {
  MatchBuffer match;
  Spans words{{0, text.size()}}, next;
  for (const auto& step : steps) {
    next.clear();
    next.reserve(words.size() * 2);
    for (const auto& [begin, len] : words) step->Split(text, begin, begin + len, match, next);
    words.swap(next);
  }
  return words;
}

}  // namespace cqkv::tokenizer_internal
