#include "kv/nf_cache.h"

#include "kv/int_cache.h"
#include "util/error.h"

namespace cqkv {

std::unique_ptr<QuantKvCache> MakeNfCache(const std::string& spec, const KvShape& shape) {
  const QuantSpec s = ParseQuantSpec(spec, "g");
  CQKV_CHECK(s.head.starts_with("nf"), "KV format '{}': expected nf<B>[:g<G>]", spec);
  const int bits = ParseBits(s, std::string_view(s.head).substr(2), {2, 3, 4});
  return MakeTokenGroupCache(spec, shape, GroupCodec::kNormalFloat, bits,
                             static_cast<int>(s.Get('g', shape.head_dim)));
}

}  // namespace cqkv
