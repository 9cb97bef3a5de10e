// Gradients of the language-model loss with respect to every layer's key and value activations
// (weights frozen): the per-token sensitivities Fisher-guided coupled quantisation of the KV
// cache weights its codebook fitting with. Input gradients only; no weight gradient is formed.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "util/tensor.h"
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

// One layer's K/V of a window and, in a gradient pass, d loss / d each, handed to a
// KvLayerSink as soon as they exist. The views are valid only during the sink call.
struct KvLayerSlice {
  int layer = 0;
  ConstMat k_pre, k, v;     // (n_tokens, kv_dim)
  ConstMat dk_pre, dk, dv;  // (n_tokens, kv_dim); 0 rows in an activations-only pass
};
using KvLayerSink = std::function<void(const KvLayerSlice&)>;

// Where a gradient pass keeps its layer checkpoints (index 2 l: the residual stream entering
// layer l, 2 l + 1: entering its MLP; (n, dim) each) from the forward sweep until the backward
// sweep reaches the layer. Without one they stay in memory (4 n L 2 dim bytes at once);
// calibration passes one backed by files so that only the current layer's are in memory.
class CheckpointStore {
 public:
  virtual ~CheckpointStore() = default;
  // Called once per index and window, in forward order.
  virtual void Put(int index, std::span<const float> x) = 0;
  // Returns what Put stored and releases it; called once per index, in backward order.
  virtual std::vector<float> Take(int index) = 0;
};

// Runs an fp32 forward pass over `tokens` at positions 0..n-1 (a fresh context, as one
// perplexity window) and, when `with_gradients`, loss = sum_{i < n-1} -log
// softmax(logits_i)[tokens[i+1]] backpropagated through the whole network (every path through
// later layers' residual stream included) to each layer's K/V. Returns the loss (0 without
// gradients).
//
// `sink` receives each layer once: in forward order during the forward pass without gradients,
// in backward order (L-1 down to 0) with them. Nothing of a layer outlives its sink call, so a
// caller that consumes slices (calibration spills them per layer) holds O(n kv_dim) of them
// instead of O(n L kv_dim). The gradient pass recomputes a layer's K/V from its checkpoint
// with the same kernels, so the slices equal the forward's bit for bit.
//
// The last token's K/V feed only its own (unscored) prediction, so their gradient rows are 0.
//
// Memory (fp32, n tokens, L layers), in bytes:
//   one layer's K/V (and gradients)     4 n 3 kv_dim  (+ 4 n 3 kv_dim with gradients)
//   layer checkpoints (gradients only)  4 n L 2 dim   (residual stream entering each layer and
//                                                      its MLP; freed layer by layer going back)
//                                       4 n 2 dim with a CheckpointStore (the current layer's)
//   one layer's scratch                 4 n (4 dim + 3 q_dim + 3 hidden + 2 n_heads)
//                                       + 4 n (q_dim + 2 kv_dim) with Q/K norms (qwen3)
//   logits, in row chunks               <= 64 MiB (16 Mi floats) + 8 chunk_rows dim
// Everything else is recomputed per layer (Q, K, V, the MLP's gate/up, attention
// probabilities row by row from Q and K, never an n x n matrix). E.g. LLaMA-2-7B (L 32,
// dim = q_dim = kv_dim 4096, hidden 11008) over 2048 tokens: 2 GiB of checkpoints + 0.6 GiB,
// plus the weights.
//
// Throws cqkv::Error for fewer than 2 tokens, more than the model's context or ids outside the
// vocabulary.
double ForwardBackwardKvStream(const Model& model, std::span<const int32_t> tokens,
                               ThreadPool& pool, bool with_gradients, const KvLayerSink& sink,
                               CheckpointStore* checkpoints = nullptr);

// ForwardBackwardKvStream with every layer's slices kept: O(n L kv_dim) more memory (4 n L 3
// kv_dim bytes each for activations and gradients). `grads` may be null: activations only, no
// loss. `acts` may be null when only gradients are wanted.
void ForwardBackwardKv(const Model& model, std::span<const int32_t> tokens, ThreadPool& pool,
                       KvActivations* acts, KvGradients* grads);

}  // namespace cqkv
