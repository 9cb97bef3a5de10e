#include "model/kv_shape.h"

namespace cqkv {

KvShape KvShapeFor(const ModelConfig& c, int max_tokens) {
  KvShape s;
  s.n_layers = c.n_layers;
  s.n_heads = c.n_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim();
  s.max_tokens = max_tokens;
  s.rope = c.rope;
  return s;
}

}  // namespace cqkv
