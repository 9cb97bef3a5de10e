// Decode-attention benchmark shared by bench/attention_bench.cc and `cqkv bench-attn`: builds B
// per-sequence caches of one format filled with random K/V, times one batched decode step (one
// query per sequence), and relates the time to cache bytes, to fp16 and to a read bound.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "quant/codebook.h"
#include "util/thread_pool.h"

namespace cqkv {

// A KV format under benchmark. Every --kv spec is accepted; in addition
// "cq:<c>c<b>b[+add|+res][+pre|+rc][:fs][:rN]" (e.g. "cq:4c8b") means CQ with random in-memory
// codebooks of that config, which times exactly like learned ones (attention cost depends on the
// code layout, not on the centroid values);
// "+add" makes the values additive (random bases, quant/additive_codebook.h), "+res" residual
// (8-bit codes, two random 16-entry stages, kv/cq_random_residual.h); "+pre" makes the
// keys pre-RoPE k-means (rotated per token from the RopeTable), "+rc" pre-RoPE rope-comm keys
// (kernels/attn_cq_ropecomm.h).
// Any other "cq:..." is a codebook file path as in --kv.
struct AttnFormat {
  std::string name;              // as given, e.g. "fp16", "int4-channel", "cq:4c8b"
  bool random_cq = false;        // cq:<c>c<b>b: random codebooks of `cq`
  CqConfig cq;                   // only when random_cq
  int window = 0;                // fp16 window of a random-codebook CQ cache (":rN")
  bool additive_values = false;  // "+add"
  bool residual_values = false;  // "+res"
  bool fast_scan = false;        // fast-scan keys of a random-codebook CQ cache (":fs")
  bool pre_rope = false;         // "+pre" or "+rc": pre-RoPE keys
  bool rope_comm = false;        // "+rc": rope-comm keys
};
// Throws cqkv::Error naming `name` when it names no known format family.
AttnFormat ParseAttnFormat(const std::string& name);
// Comma-separated list of formats ("fp16,int4-channel,cq:4c8b").
std::vector<AttnFormat> ParseAttnFormats(const std::string& list);

// An empty cache of `format` for `shape`; throws cqkv::Error for a malformed spec.
std::unique_ptr<KvCache> MakeBenchCache(const AttnFormat& format, const KvShape& shape,
                                        uint64_t seed);
// Appends random keys/values (uniform in [-1, 1]; pre- and post-RoPE keys equal) to every layer
// of `cache` until it holds `tokens` tokens, in blocks of up to `block_tokens` tokens.
void FillRandom(KvCache& cache, int64_t tokens, uint64_t seed, int block_tokens = 2048);

// Bytes one sequence's cache of `format` would take for `shape` at shape.max_tokens tokens,
// from BytesPerToken of an empty probe cache (so nothing large is allocated).
double EstimateCacheBytes(const AttnFormat& format, const KvShape& shape);

// B sequences' caches of one format, each holding shape.max_tokens tokens in every layer.
struct AttnCaches {
  AttnFormat format;
  KvShape shape;
  std::vector<std::unique_ptr<KvCache>> seqs;
  std::vector<float> q;    // (batch, q_dim) random decode queries, one per sequence
  std::vector<float> out;  // (batch, q_dim) attention outputs
};
// Builds and fills the caches, sequences split over the pool's threads (Append itself is
// single-threaded, so this is what makes filling 128k-token caches bearable).
AttnCaches BuildAttnCaches(const AttnFormat& format, const KvShape& shape, int batch,
                           ThreadPool& pool, uint64_t seed = 1);

// Evicts the caches' lines from every cache level before a timed round. A real decode step
// reads each layer's KV cache once, between reads of that layer's weights, so the cache is never
// warm in the LLC; a benchmark that re-reads one layer's small cache would time the LLC instead
// (at 4k tokens an fp16 layer is 16 MiB, half this machine's L3).
class CacheFlusher {
 public:
  // bytes = 0: four times the last-level cache (sysconf), clamped to [64, 256] MiB.
  explicit CacheFlusher(size_t bytes = 0);
  void Flush(ThreadPool& pool);  // reads one word per line of the buffer on every thread
  size_t bytes() const { return buf_.size() * sizeof(uint64_t); }

 private:
  std::vector<uint64_t> buf_;
  uint64_t sink_ = 0;
};

// One timing round: one decode step on layer 0 for the whole batch (one query per sequence at
// position max_tokens - 1, seeing every cached token), through DecodeAttention over all
// sequences. With `flush`, the caches are flushed first (untimed). Returns seconds.
double TimeAttendRound(AttnCaches& caches, ThreadPool& pool, CacheFlusher* flush = nullptr);

struct AttnResult {
  std::string format;
  double seconds = 0;          // median over repetitions of one round (B Attends)
  double ns_per_token = 0;     // seconds * 1e9 / (T * B): per cached token, per sequence, per layer
  double gbps = 0;             // bytes_per_token * T * B / seconds / 1e9
  double ratio_vs_fp16 = 0;    // fp16 seconds / this format's seconds (> 1: faster than fp16)
  double bytes_per_token = 0;  // KvCache::BytesPerToken / n_layers: one layer's K+V bytes
  double bits_per_channel = 0;  // KvCache::BitsPerChannel
};
// Times `reps` rounds after two untimed warm-up rounds. ratio_vs_fp16 is left 0.
AttnResult TimeAttend(AttnCaches& caches, int reps, ThreadPool& pool,
                      CacheFlusher* flush = nullptr);

// STREAM-like read bandwidth: best of `reps` multi-threaded sums over a `bytes` buffer, GB/s.
double MeasureStreamReadGBs(ThreadPool& pool, size_t bytes = size_t{1} << 30, int reps = 5);

struct AttnBenchOptions {
  int ctx = 4096;    // cached tokens per sequence (T)
  int batch = 1;     // sequences (B)
  int n_heads = 32;  // query heads
  int n_kv_heads = 8;
  int head_dim = 128;
  int reps = 5;
  bool warm = false;       // true: rounds re-read caches left in the LLC (see CacheFlusher)
  size_t flush_bytes = 0;  // CacheFlusher buffer; 0 = its default
  // Formats whose caches fit this many bytes together are timed round-robin (see RunAttnBench).
  double interleave_max_bytes = 4.0 * (1 << 30);
  std::vector<AttnFormat> formats;
  size_t stream_bytes = size_t{1} << 30;
  // The shape of one sequence's cache: a single layer (attention cost is per layer, so more
  // layers would only multiply fill time), capacity ctx, post-RoPE default RoPE.
  KvShape Shape() const;
};

struct AttnBenchReport {
  AttnBenchOptions options;
  int threads = 0;
  double stream_gbps = 0;
  size_t flush_bytes = 0;           // 0 when warm
  bool interleaved = false;         // rounds of all formats in turn, ratios paired per round
  std::vector<AttnResult> results;  // one per format, in order; fp16 first when not listed
};
// Runs every format (adding fp16 when missing, for the ratio) and the stream kernel. When all
// caches fit options.interleave_max_bytes together, the formats' rounds alternate and each
// ratio_vs_fp16 is the median of per-round ratios; otherwise formats run one after another and
// the ratio is of medians.
// `log` gets one progress line per format when non-null.
AttnBenchReport RunAttnBench(const AttnBenchOptions& options, ThreadPool& pool,
                             void (*log)(const std::string&) = nullptr);
std::string AttnBenchMarkdown(const AttnBenchReport& report);
std::string AttnBenchJson(const AttnBenchReport& report);

}  // namespace cqkv
