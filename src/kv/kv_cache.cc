#include "kv/kv_cache.h"

#include "kv/dense_cache.h"
#include "util/error.h"

namespace cqkv {

KvShape KvShape::FromConfig(const ModelConfig& c, int max_tokens) {
  KvShape s;
  s.n_layers = c.n_layers;
  s.n_heads = c.n_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim();
  s.max_tokens = max_tokens;
  s.rope_freq_base = c.rope_freq_base;
  s.rope_type = c.rope_type;
  return s;
}

std::unique_ptr<KvCache> MakeKvCache(const std::string& spec, const KvShape& shape) {
  if (spec == "fp32") return MakeFp32Cache(shape);
  if (spec == "fp16") return MakeFp16Cache(shape);
  Fail("--kv: unknown KV cache format '{}' (known: fp32, fp16)", spec);
}

std::string KvFormatsHelp() {
  return "fp32  full precision (quality reference)\n"
         "fp16  IEEE half (speed baseline)";
}

}  // namespace cqkv
