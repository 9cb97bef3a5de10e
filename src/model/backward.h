// Gradients of the language-model loss with respect to every layer's key and value activations
// (weights frozen): the per-token sensitivities Fisher-guided coupled quantisation of the KV
// cache weights its codebook fitting with. Input gradients only; no weight gradient is formed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"
#include "util/thread_pool.h"

namespace cqkv {

// The K/V activations of one window, exactly as the forward pass hands them to a KV cache.
struct KvActivations {
  int64_t n_tokens = 0;
  int n_layers = 0;
  int kv_dim = 0;
  // [layer] (n_tokens, kv_dim) row-major; channel = kv_head * head_dim + d.
  std::vector<std::vector<float>> k_pre;  // keys before RoPE
  std::vector<std::vector<float>> k;      // keys after RoPE (what attention scores use)
  std::vector<std::vector<float>> v;      // values
};

// d loss / d activation, same layout as KvActivations.
struct KvGradients {
  std::vector<std::vector<float>> dk_pre;  // = R(pos)^T dk, since k = R(pos) k_pre
  std::vector<std::vector<float>> dk;
  std::vector<std::vector<float>> dv;
  double loss = 0;          // summed NLL (nats) over the predicted tokens
  int64_t n_predicted = 0;  // n_tokens - 1
};

// Runs an fp32 forward pass over `tokens` at positions 0..n-1 (a fresh context, as one
// perplexity window), loss = sum_{i < n-1} -log softmax(logits_i)[tokens[i+1]], and
// backpropagates it through the whole network (every path through later layers' residual
// stream included) to each layer's K/V. `grads` may be null: activations only, no loss.
// `acts` may be null when only gradients are wanted.
//
// The last token's K/V feed only its own (unscored) prediction, so their gradient rows are 0.
//
// Memory (fp32, n tokens, L layers), in bytes:
//   activations (the output)            4 n L 3 kv_dim
//   gradients (the output)              4 n L 3 kv_dim
//   layer checkpoints                   4 n L 2 dim   (residual stream entering each layer and
//                                                      its MLP; freed layer by layer going back)
//   one layer's scratch                 4 n (4 dim + 3 q_dim + 3 hidden + 2 n_heads)
//                                       + 4 n (q_dim + 2 kv_dim) with Q/K norms (qwen3)
//   logits, in row chunks               <= 64 MiB (16 Mi floats) + 8 chunk_rows dim
// Everything else is recomputed per layer (Q, the MLP's gate/up, attention probabilities row by
// row from Q and K, never an n x n matrix). E.g. LLaMA-2-7B (L 32, dim = q_dim = kv_dim 4096,
// hidden 11008) over 2048 tokens: 3 + 3 + 2 + 0.5 GiB, plus the weights.
//
// Throws cqkv::Error for fewer than 2 tokens, more than the model's context or ids outside the
// vocabulary.
void ForwardBackwardKv(const Model& model, std::span<const int32_t> tokens, ThreadPool& pool,
                       KvActivations* acts, KvGradients* grads);

}  // namespace cqkv
