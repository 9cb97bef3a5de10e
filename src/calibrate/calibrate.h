// Learning CQ codebooks from calibration text: run the model over calibration windows, collect
// every layer's keys (pre- or post-RoPE) and values, optionally their loss gradients (diagonal
// Fisher weights), and run one (weighted) k-means per (layer, K/V, channel group). Each window's
// layers are streamed to a spill as produced and fitted one channel group at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/codebook.h"
#include "util/thread_pool.h"

namespace cqkv {

struct CalibrationOptions {
  CqConfig config;
  KeyPosition keys = KeyPosition::kPostRope;
  bool fisher = false;
  ValueKind values = ValueKind::kKMeans;  // quant/additive_codebook.h, residual_codebook.h
  KeyKind key_kind = KeyKind::kKMeans;    // rope-comm (pre-RoPE keys): quant/rope_comm.h
  int n_seqs = 16;                        // calibration windows
  int seq_len = 256;   // tokens per window (the paper uses 16 x 2048 on 7B models)
  int max_iter = 100;  // Lloyd iterations per k-means
  int n_init = 1;      // k-means restarts (best objective kept)
  uint64_t seed = 1234;
  std::string description;  // recorded in the codebook file
  // Directory for the per-layer spill files (a private subdirectory, removed afterwards); empty
  // keeps every layer's rows in memory. See Calibrate for what each costs.
  std::string spill_dir;
};

// Progress of the two stages: "windows" (forward, and backward with Fisher; `done` of `total`
// windows) then "k-means" (`done` of `total` (layer, K/V, group) fits).
struct CalibrationStatus {
  const char* stage = "";
  int64_t done = 0;
  int64_t total = 0;
};
using CalibrationProgress = std::function<void(const CalibrationStatus&)>;

// What a calibration run spent beyond its result.
struct CalibrationStats {
  int64_t spill_bytes = 0;  // activation rows written to spill_dir (0 in memory)
  // Fisher only: layer checkpoints written to spill_dir and read back within each window's
  // backward sweep (0 in memory); 4 n_seqs seq_len L 2 dim.
  int64_t checkpoint_bytes = 0;
};

// Uses the first n_seqs * seq_len tokens of `tokens` as consecutive windows. Memory for T =
// n_seqs * seq_len tokens, fp32, beside the model and one window's pass (model/backward.h):
//   in memory    4 T L 2 kv_dim (+ 4 T L 2 kv_dim / c with Fisher) bytes, all layers at once,
//                and with Fisher every layer's checkpoints of the window (4 seq_len L 2 dim);
//   spill_dir    4 T (c + 1) bytes per thread: one channel group of one (layer, K/V) problem
//                is read back per fit; the files hold what memory would (written once, read
//                once, deleted as fitted). With Fisher the window's layer checkpoints go there
//                too (one layer's in memory). What grows with the layer count is then only the
//                weights and the result (4 L 2 kv_dim 2^b bytes of centroids).
// Either way a window's pass adds one layer's activations (model/backward.h).
// The codebooks are the same either way: same rows in the same order, same seeds.
// Throws cqkv::Error when there are too few tokens, seq_len exceeds the model context, c does not
// divide the head dimension, or the spill cannot be written.
CodebookSet Calibrate(const Model& model, const std::vector<int32_t>& tokens,
                      const CalibrationOptions& opt, ThreadPool& pool,
                      const CalibrationProgress& progress = nullptr,
                      CalibrationStats* stats = nullptr);

// Parses "16x256" into (n_seqs, seq_len). Throws naming the flag text.
void ParseTokensSpec(const std::string& text, int* n_seqs, int* seq_len);

}  // namespace cqkv
