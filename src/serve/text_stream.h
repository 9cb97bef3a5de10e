// Incremental completion text for streaming: appends each generated token's piece, finds stop
// strings (which may span tokens) and releases only text that can no longer turn into a stop
// string or end inside an unfinished UTF-8 character, so clients never see a half stop string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cqkv {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});

  // Adds a token's text; returns the text that is now safe to emit (possibly empty). Once a stop
  // string is found, stopped() is true and the text returned ends just before it.
  std::string Push(std::string_view piece);
  // Releases what is still held back, when generation ends for another reason (length, EOS).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stop_;  // non-empty strings only
  size_t longest_stop_ = 0;
  std::string text_;    // everything generated, cut at the stop string once stopped
  size_t emitted_ = 0;  // bytes of text_ already released
  bool stopped_ = false;
};

}  // namespace cqkv
