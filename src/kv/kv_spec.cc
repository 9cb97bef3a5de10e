#include "kv/kv_spec.h"

#include "kv/cq_cache.h"
#include "kv/mixed_spec.h"
#include "kv/quant_cache.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Removes the word option ":<name>" from `text` (options are otherwise <letter><integer>) and
// tells whether it was there; twice is an error naming the spec.
bool TakeWordOption(std::string& text, std::string_view name, const std::string& spec) {
  bool found = false;
  size_t start = text.find(':');
  while (start != std::string::npos) {
    size_t end = text.find(':', start + 1);
    if (end == std::string::npos) end = text.size();
    if (std::string_view(text).substr(start + 1, end - start - 1) == name) {
      CQKV_CHECK(!found, "KV format '{}': option '{}' given twice", spec, name);
      found = true;
      text.erase(start, end - start);
      start = text.find(':', start);
    } else {
      start = end == text.size() ? std::string::npos : end;
    }
  }
  return found;
}

}  // namespace

KvSpec ParseKvSpec(const std::string& text) {
  KvSpec s;
  s.text = text;
  if (IsMixedKvSpec(text)) {
    s.family = KvFamily::kMixed;
    s.mixed = std::make_shared<const MixedSpec>(ParseMixedSpec(text));
    return s;
  }
  if (text == "fp32" || text == "fp16") {
    s.family = text == "fp32" ? KvFamily::kFp32 : KvFamily::kFp16;
    return s;
  }
  if (text.starts_with("cq:")) {
    const CqSpec cq = ParseCqSpec(text);
    s.family = KvFamily::kCq;
    s.path = cq.path;
    s.window = cq.window;
    return s;
  }
  auto group_of = [&](const QuantSpec& q) {
    const int64_t g = q.Get('g', 0);
    CQKV_CHECK(!q.options.contains('g') || (g > 0 && g <= (1 << 20)),
               "KV format '{}': group size g{} must be in 1..{}", text, g, 1 << 20);
    return static_cast<int>(g);
  };
  if (text.starts_with("int")) {
    std::string rest = text;
    s.hadamard = TakeWordOption(rest, "hadamard", text);
    QuantSpec q = ParseQuantSpec(rest, "g");
    q.text = text;
    const size_t dash = q.head.find('-');
    CQKV_CHECK(dash != std::string::npos,
               "KV format '{}': expected int<B>-token[:g<G>][:hadamard] or "
               "int<B>-channel[:g<G>][:hadamard]",
               text);
    s.bits = ParseBits(q, std::string_view(q.head).substr(3, dash - 3), {1, 2, 4, 8});
    const std::string layout = q.head.substr(dash + 1);
    CQKV_CHECK(layout == "token" || layout == "channel",
               "KV format '{}': unknown layout '{}' (int<B>-token or int<B>-channel)", text,
               layout);
    s.family = layout == "token" ? KvFamily::kIntToken : KvFamily::kIntChannel;
    s.group = group_of(q);
    return s;
  }
  if (text.starts_with("nf")) {
    const QuantSpec q = ParseQuantSpec(text, "g");
    s.family = KvFamily::kNf;
    s.bits = ParseBits(q, std::string_view(q.head).substr(2), {2, 3, 4});
    s.group = group_of(q);
    return s;
  }
  if (text.starts_with("kivi")) {
    const QuantSpec q = ParseQuantSpec(text, "gr");
    s.family = KvFamily::kKivi;
    s.bits = ParseBits(q, std::string_view(q.head).substr(4), {1, 2, 4});
    s.group = group_of(q);
    const int64_t r = q.Get('r', -1);
    CQKV_CHECK(r <= (1 << 24), "KV format '{}': window r{} is over {} tokens", text, r, 1 << 24);
    s.window = static_cast<int>(r);
    return s;
  }
  if (text.starts_with("tq")) {
    std::string rest = text;
    s.qjl = TakeWordOption(rest, "qjl", text);
    QuantSpec q = ParseQuantSpec(rest, "");
    q.text = text;
    s.family = KvFamily::kTq;
    s.bits = ParseBits(q, std::string_view(q.head).substr(2), {2, 3, 4});
    return s;
  }
  Fail(
      "unknown KV cache format '{}' (known: fp32, fp16, cq:PATH, int<B>-token, int<B>-channel, "
      "nf<B>, kivi<B>, tq<B>)",
      text);
}

}  // namespace cqkv
