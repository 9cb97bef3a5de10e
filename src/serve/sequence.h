// One request as the engine tracks it from submission to its final event: its tokens (prompt then
// generated), how many of them its KV cache holds, its sampler and its streaming text state.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cqkv/engine.h"
#include "kv/kv_cache.h"
#include "model/sampler.h"
#include "serve/text_stream.h"

namespace cqkv {

struct Sequence {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // prompt followed by every generated token
  int prompt_len = 0;
  int generated = 0;
  SamplingParams params;
  Sampler sampler{SamplerConfig{}};
  TextStream text;
  TokenCallback on_token;

  // Running state (null cache while queued or after preemption). The cache holds the K/V of
  // tokens[0, cache->tokens(0)); the rest are fed by the next steps (a prompt chunk, or the one
  // token sampled last). Resetting it returns its pages and fixed bytes to the pool.
  std::unique_ptr<KvCache> cache;

  int64_t cached() const { return cache ? cache->tokens(0) : 0; }
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - cached(); }
};

}  // namespace cqkv
