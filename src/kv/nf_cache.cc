#include "kv/nf_cache.h"

#include "kv/int_cache.h"
#include "util/error.h"

namespace cqkv {

std::unique_ptr<QuantKvCache> MakeNfCache(const KvSpec& spec, const KvShape& shape) {
  CQKV_CHECK(spec.family == KvFamily::kNf, "KV format '{}' is not an nf format", spec.text);
  return MakeTokenGroupCache(spec.text, shape, GroupCodec::kNormalFloat, spec.bits,
                             spec.group > 0 ? spec.group : shape.head_dim);
}

std::unique_ptr<QuantKvCache> MakeNfCache(const std::string& spec, const KvShape& shape) {
  return MakeNfCache(ParseKvSpec(spec), shape);
}

}  // namespace cqkv
