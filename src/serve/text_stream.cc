#include "serve/text_stream.h"

#include <algorithm>

#include "util/utf8.h"

namespace cqkv {

TextStream::TextStream(std::vector<std::string> stop) {
  for (std::string& s : stop) {
    if (s.empty()) continue;
    longest_stop_ = std::max(longest_stop_, s.size());
    stop_.push_back(std::move(s));
  }
}

std::string TextStream::Push(std::string_view piece) {
  if (stopped_) return "";
  const size_t old_size = text_.size();
  text_.append(piece);
  // A stop string found now must end inside the new piece: start far enough back to catch one
  // that began in earlier text.
  const size_t from = old_size > longest_stop_ ? old_size - longest_stop_ : 0;
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t at = text_.find(s, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    text_.resize(std::max(cut, emitted_));
    stopped_ = true;
    std::string out = text_.substr(emitted_);
    emitted_ = text_.size();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& s : stop_) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k) {
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  const size_t safe = CompleteUtf8Prefix(std::string_view(text_).substr(0, text_.size() - hold));
  if (safe <= emitted_) return "";
  std::string out = text_.substr(emitted_, safe - emitted_);
  emitted_ = safe;
  return out;
}

std::string TextStream::Flush() {
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace cqkv
