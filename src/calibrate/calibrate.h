// Learning CQ codebooks from calibration text: run the model over calibration windows, collect
// every layer's keys (pre- or post-RoPE) and values, optionally their loss gradients (diagonal
// Fisher weights), and run one (weighted) k-means per (layer, K/V, channel group).
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
  ValueKind values = ValueKind::kKMeans;  // additive: quant/additive_codebook.h
  int n_seqs = 16;                        // calibration windows
  int seq_len = 256;   // tokens per window (the paper uses 16 x 2048 on 7B models)
  int max_iter = 100;  // Lloyd iterations per k-means
  int n_init = 1;      // k-means restarts (best objective kept)
  uint64_t seed = 1234;
  std::string description;  // recorded in the codebook file
};

// `message` is a human-readable progress line; `fraction` in [0, 1].
using CalibrationProgress = std::function<void(const std::string& message, double fraction)>;

// Uses the first n_seqs * seq_len tokens of `tokens` as consecutive windows. Throws
// cqkv::Error when there are too few tokens, seq_len exceeds the model context, or c does not
// divide the head dimension.
CodebookSet Calibrate(const Model& model, const std::vector<int32_t>& tokens,
                      const CalibrationOptions& opt, ThreadPool& pool,
                      const CalibrationProgress& progress = nullptr);

// Parses "16x256" into (n_seqs, seq_len). Throws naming the flag text.
void ParseTokensSpec(const std::string& text, int* n_seqs, int* seq_len);

}  // namespace cqkv
