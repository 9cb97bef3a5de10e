#include "kv/mixed_spec.h"

#include <charconv>
#include <string_view>

#include "util/error.h"

namespace cqkv {
namespace {

// A layer index or count: decimal digits only, below 2^20.
int ParseLayerNumber(std::string_view s, const std::string& spec, const std::string& part) {
  int v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  CQKV_CHECK(
      !s.empty() && ec == std::errc() && end == s.data() + s.size() && v >= 0 && v < (1 << 20),
      "KV format '{}': part '{}': '{}' is not a layer number", spec, part, s);
  return v;
}

MixedLayerSel ParseSel(std::string_view item, const std::string& spec, const std::string& part) {
  MixedLayerSel sel;
  sel.text = std::string(item);
  CQKV_CHECK(!item.empty(),
             "KV format '{}': part '{}': empty item in the layer list (N, N-M, firstN, lastN)",
             spec, part);
  auto count = [&](std::string_view digits) {
    const int n = ParseLayerNumber(digits, spec, part);
    CQKV_CHECK(n > 0, "KV format '{}': part '{}': '{}' names no layer", spec, part, item);
    return n;
  };
  if (item.starts_with("first")) {
    sel.kind = MixedLayerSel::Kind::kFirst;
    sel.a = count(item.substr(5));
  } else if (item.starts_with("last")) {
    sel.kind = MixedLayerSel::Kind::kLast;
    sel.a = count(item.substr(4));
  } else {
    const size_t dash = item.find('-');
    sel.a = ParseLayerNumber(item.substr(0, dash), spec, part);
    sel.b = dash == std::string_view::npos ? sel.a
                                           : ParseLayerNumber(item.substr(dash + 1), spec, part);
    CQKV_CHECK(sel.a <= sel.b, "KV format '{}': part '{}': layer range '{}' is empty", spec, part,
               item);
  }
  return sel;
}

KvSpec ParseSub(const std::string& fmt, const std::string& spec, const std::string& part) {
  CQKV_CHECK(!fmt.empty(), "KV format '{}': part '{}': missing format", spec, part);
  CQKV_CHECK(!IsMixedKvSpec(fmt) && fmt.find('=') == std::string::npos,
             "KV format '{}': part '{}': '{}' is not a single format (K= and V= come once, "
             "at the start of a part)",
             spec, part, fmt);
  try {
    return ParseKvSpec(fmt);
  } catch (const Error& e) {
    throw Error(fmt::format("KV format '{}': part '{}': {}", spec, part, e.what()), e.code());
  }
}

MixedPart ParsePart(const std::string& part, const std::string& spec) {
  MixedPart p;
  p.text = part;
  CQKV_CHECK(!part.empty(), "KV format '{}': empty part (parts are separated by one ';')", spec);
  const size_t at = part.find('@');
  CQKV_CHECK(at == std::string::npos || part.find('@', at + 1) == std::string::npos,
             "KV format '{}': part '{}' has more than one '@' (a file path cannot contain '@' "
             "or ';' in a mixed spec)",
             spec, part);
  const std::string formats = part.substr(0, at);
  if (at != std::string::npos) {
    const std::string_view list = std::string_view(part).substr(at + 1);
    CQKV_CHECK(!list.empty(), "KV format '{}': part '{}': no layers after '@'", spec, part);
    size_t start = 0;
    while (true) {
      const size_t comma = list.find(',', start);
      p.layers.push_back(ParseSel(list.substr(start, comma - start), spec, part));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }
  auto tag = [&](size_t pos) -> char {  // 'K' or 'V' when formats has "K=" / "V=" at pos
    if (pos + 1 >= formats.size() || formats[pos + 1] != '=') return 0;
    const char c = formats[pos];
    return c == 'K' || c == 'k' ? 'K' : c == 'V' || c == 'v' ? 'V' : 0;
  };
  const char first = tag(0);
  if (first == 0) {
    p.k = p.v = ParseSub(formats, spec, part);
    return p;
  }
  // "K=A,V=B": the second tag is the one ',' followed by the other letter and '='.
  const char second = first == 'K' ? 'V' : 'K';
  size_t sep = std::string::npos;
  for (size_t i = formats.find(','); i != std::string::npos; i = formats.find(',', i + 1)) {
    if (tag(i + 1) != second) continue;
    CQKV_CHECK(sep == std::string::npos,
               "KV format '{}': part '{}': more than one ',{}=' (ambiguous K/V split)", spec, part,
               second);
    sep = i;
  }
  CQKV_CHECK(sep != std::string::npos,
             "KV format '{}': part '{}': {}= needs a matching ',{}=' (K=FMT,V=FMT)", spec, part,
             first, second);
  const KvSpec a = ParseSub(formats.substr(2, sep - 2), spec, part);
  const KvSpec b = ParseSub(formats.substr(sep + 3), spec, part);
  p.k = first == 'K' ? a : b;
  p.v = first == 'K' ? b : a;
  return p;
}

}  // namespace

bool IsMixedKvSpec(const std::string& text) {
  return text.find(';') != std::string::npos || text.find('@') != std::string::npos ||
         (text.size() >= 2 && text[1] == '=' &&
          std::string_view("KkVv").find(text[0]) != std::string_view::npos);
}

MixedSpec ParseMixedSpec(const std::string& text) {
  MixedSpec s;
  s.text = text;
  int defaults = 0;
  size_t start = 0;
  while (true) {
    const size_t semi = text.find(';', start);
    s.parts.push_back(ParsePart(text.substr(start, semi - start), text));
    if (s.parts.back().layers.empty()) {
      CQKV_CHECK(++defaults == 1,
                 "KV format '{}': part '{}' is a second default (every part but one needs "
                 "'@LAYERS')",
                 text, s.parts.back().text);
    }
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  return s;
}

std::vector<int> ResolveMixedLayers(const MixedSpec& spec, int n_layers) {
  std::vector<int> owner(static_cast<size_t>(n_layers), -1);
  int fallback = -1;
  for (size_t pi = 0; pi < spec.parts.size(); ++pi) {
    const MixedPart& part = spec.parts[pi];
    if (part.layers.empty()) fallback = static_cast<int>(pi);
    for (const MixedLayerSel& sel : part.layers) {
      int lo = sel.a, hi = sel.b;
      if (sel.kind != MixedLayerSel::Kind::kRange) {
        CQKV_CHECK(sel.a <= n_layers, "KV format '{}': part '{}': '{}' but the model has {} layers",
                   spec.text, part.text, sel.text, n_layers);
        lo = sel.kind == MixedLayerSel::Kind::kFirst ? 0 : n_layers - sel.a;
        hi = lo + sel.a - 1;
      }
      CQKV_CHECK(hi < n_layers,
                 "KV format '{}': part '{}': layer {} is past the model's {} layers (0..{})",
                 spec.text, part.text, hi, n_layers, n_layers - 1);
      for (int l = lo; l <= hi; ++l) {
        CQKV_CHECK(owner[l] < 0, "KV format '{}': layer {} is named by both '{}' and '{}'",
                   spec.text, l, spec.parts[static_cast<size_t>(owner[l])].text, part.text);
        owner[l] = static_cast<int>(pi);
      }
    }
  }
  for (int l = 0; l < n_layers; ++l) {
    if (owner[l] >= 0) continue;
    CQKV_CHECK(fallback >= 0,
               "KV format '{}': layer {} has no format (add a default part without '@')", spec.text,
               l);
    owner[l] = fallback;
  }
  return owner;
}

}  // namespace cqkv
