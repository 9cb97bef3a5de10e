// Mixed-precision `--kv` specs: formats per layer and separate key / value formats in one value,
// e.g. "int2-token;fp16@first1,last1" or "K=int4-token,V=int2-token". Parsed once at the edge
// (ParseKvSpec) into parts; the model's layer count resolves them (ResolveMixedLayers) when the
// cache is made (kv/mixed_cache.h).
//
// Grammar (';' and '@' never occur in a single format, so they cannot clash with cq paths):
//   SPEC   := PART { ';' PART }
//   PART   := FORMATS [ '@' LAYERS ]        no '@': the default for every layer not named
//   FORMATS:= FMT | 'K=' FMT ',V=' FMT      (or 'V=' FMT ',K=' FMT; k= / v= also accepted)
//   LAYERS := SEL { ',' SEL }               SEL := N | N-M | firstN | lastN   (0-based)
// At most one default part; every layer must get exactly one part.
#pragma once

#include <string>
#include <vector>

#include "kv/kv_spec.h"

namespace cqkv {

// One LAYERS item.
struct MixedLayerSel {
  enum class Kind { kRange, kFirst, kLast };
  Kind kind = Kind::kRange;
  int a = 0, b = 0;  // kRange: layers a..b inclusive; kFirst / kLast: a layers
  std::string text;  // as written, for messages
};

struct MixedPart {
  std::string text;                   // the part as written
  KvSpec k, v;                        // key and value formats (the same spec when not split)
  std::vector<MixedLayerSel> layers;  // empty: the default part
  bool split() const { return k.text != v.text; }
};

struct MixedSpec {
  std::string text;
  std::vector<MixedPart> parts;
};

// Whether `text` is a mixed spec rather than a single format: it has ';' or '@', or starts with
// K= / V=.
bool IsMixedKvSpec(const std::string& text);
// Throws cqkv::Error quoting the spec and the part at fault: empty part, two defaults, a
// malformed layer list or K/V pair, a nested mixed format, or any error of a sub-format.
MixedSpec ParseMixedSpec(const std::string& text);
// The part index of each of `n_layers` layers. Throws naming the part at fault when a layer is
// past the model, named twice, or has no part.
std::vector<int> ResolveMixedLayers(const MixedSpec& spec, int n_layers);

}  // namespace cqkv
