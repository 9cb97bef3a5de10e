// Decode-attention benchmark: random caches of any format, Attend timing and a read-bandwidth
// bound (see attn_bench.h for the definitions of every reported figure).
#include "bench/harness/attn_bench.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <regex>

#include <unistd.h>

#include "kv/cq_cache.h"
#include "kv/decode_attention.h"
#include "quant/additive_codebook.h"
#include "quant/residual_codebook.h"
#include "util/error.h"
#include "util/fast_rng.h"

namespace cqkv {
namespace {

using Clock = std::chrono::steady_clock;

// Filling gigabytes of K/V with std::mt19937 would take longer than attending to them.
void FillUniform(std::vector<float>& v, FastRng& rng) {
  for (float& x : v) x = rng.Next();
}

// A small shape every built-in format accepts, to reject malformed specs at parse time.
KvShape ProbeShape() {
  KvShape s;
  s.n_layers = 1;
  s.n_heads = 1;
  s.n_kv_heads = 1;
  s.head_dim = 128;
  s.max_tokens = 256;
  return s;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

AttnFormat ParseAttnFormat(const std::string& name) {
  AttnFormat f;
  f.name = name;
  if (name.starts_with("cq:")) {
    static const std::regex kRandom(
        R"(cq:(\d+c\d+b)(\+add|\+res)?(\+pre|\+rc)?(:fs)?(?::r(\d+))?)");
    std::smatch m;
    if (std::regex_match(name, m, kRandom)) {
      f.random_cq = true;
      f.cq = CqConfig::Parse(m[1].str());
      f.additive_values = m[2].matched && m[2].str() == "+add";
      f.residual_values = m[2].matched && m[2].str() == "+res";
      CQKV_CHECK(!f.residual_values || f.cq.bits == 8,
                 "--formats: '{}': residual values (+res) need 8-bit codes", name);
      f.pre_rope = m[3].matched;
      f.rope_comm = m[3].matched && m[3].str() == "+rc";
      f.fast_scan = m[4].matched;
      f.window = m[5].matched ? std::stoi(m[5].str()) : 0;
    }
    CQKV_CHECK(name.size() > 3, "--formats: '{}' names no CQ config or codebook file", name);
    return f;  // a codebook path is checked when the cache is made
  }
  const bool known = name == "fp32" || name == "fp16" || name.starts_with("int") ||
                     name.starts_with("nf") || name.starts_with("kivi") || name.starts_with("tq");
  CQKV_CHECK(known,
             "--formats: unknown KV format '{}' (known: fp32, fp16, int<B>-token, "
             "int<B>-channel, nf<B>, kivi<B>, tq<B>, cq:<c>c<b>b (random codebooks), cq:PATH)",
             name);
  MakeKvCache(name, ProbeShape());  // throws naming the spec when its options are malformed
  return f;
}

std::vector<AttnFormat> ParseAttnFormats(const std::string& list) {
  std::vector<AttnFormat> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    if (!item.empty()) out.push_back(ParseAttnFormat(item));
    start = comma + 1;
  }
  CQKV_CHECK(!out.empty(), "--formats: no format given in '{}'", list);
  return out;
}

std::unique_ptr<KvCache> MakeBenchCache(const AttnFormat& format, const KvShape& shape,
                                        uint64_t seed) {
  if (format.random_cq) {
    CodebookSet set = RandomCodebooks(
        shape, format.cq, seed, format.pre_rope ? KeyPosition::kPreRope : KeyPosition::kPostRope);
    if (format.rope_comm) set.key_kind = KeyKind::kRopeComm;
    if (format.additive_values) RandomAdditiveValues(set, seed + 1);
    if (format.residual_values) RandomResidualValues(set, seed + 1);
    return MakeCqCache(std::move(set), shape, format.window, format.name, format.fast_scan);
  }
  return MakeKvCache(format.name, shape);
}

void FillRandom(KvCache& cache, int64_t tokens, uint64_t seed, int block_tokens) {
  const int kv_dim = cache.shape().kv_dim();
  FastRng rng(seed);
  std::vector<float> k, v;
  for (int layer = 0; layer < cache.shape().n_layers; ++layer) {
    while (cache.tokens(layer) < tokens) {
      const int64_t pos0 = cache.tokens(layer);
      const int64_t n = std::min<int64_t>(block_tokens, tokens - pos0);
      // k, v: (n, kv_dim) row-major
      k.resize(static_cast<size_t>(n * kv_dim));
      v.resize(k.size());
      FillUniform(k, rng);
      FillUniform(v, rng);
      KvBlock block;
      block.pos0 = pos0;
      block.k = ConstMat(k.data(), n, kv_dim);
      block.k_pre = block.k;
      block.v = ConstMat(v.data(), n, kv_dim);
      cache.Append(layer, block);
    }
  }
}

double EstimateCacheBytes(const AttnFormat& format, const KvShape& shape) {
  // Dense formats allocate their capacity up front, so the probe holds few tokens; tables
  // amortised over capacity are then over-counted a little, which only makes skipping cautious.
  KvShape probe = shape;
  probe.max_tokens = std::min(shape.max_tokens, 1024);
  const auto cache = MakeBenchCache(format, probe, 1);
  return cache->BytesPerToken() * shape.max_tokens;
}

AttnCaches BuildAttnCaches(const AttnFormat& format, const KvShape& shape, int batch,
                           ThreadPool& pool, uint64_t seed) {
  AttnCaches c;
  c.format = format;
  c.shape = shape;
  c.seqs.resize(static_cast<size_t>(batch));
  // Siblings share the first cache's codebooks, as the sequences of a served batch would.
  c.seqs[0] = MakeBenchCache(format, shape, seed);
  for (int b = 1; b < batch; ++b) c.seqs[b] = c.seqs[0]->NewSibling();
  pool.ParallelFor(batch, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      FillRandom(*c.seqs[b], shape.max_tokens, seed * 1000003 + static_cast<uint64_t>(b));
    }
  });
  // Queries (batch, q_dim): scaled like a real q·k/sqrt(d) so softmax stays non-degenerate.
  FastRng rng(seed ^ 0x51ED);
  c.q.resize(static_cast<size_t>(batch) * shape.q_dim());
  FillUniform(c.q, rng);
  c.out.assign(c.q.size(), 0.0f);
  return c;
}

CacheFlusher::CacheFlusher(size_t bytes) {
  if (bytes == 0) {
    // Some hypervisors report a host-sized LLC: clamp to [64, 256] MiB.
    const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    bytes = std::clamp<size_t>(4 * static_cast<size_t>(std::max(0L, llc)), size_t{64} << 20,
                               size_t{256} << 20);
  }
  buf_.assign(bytes / sizeof(uint64_t), 1);
}

void CacheFlusher::Flush(ThreadPool& pool) {
  constexpr int64_t kLine = 64 / sizeof(uint64_t);
  const int64_t lines = static_cast<int64_t>(buf_.size()) / kLine;
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()), 0);
  pool.ParallelFor(lines, 4096, [&](int64_t b, int64_t e, int tid) {
    uint64_t s = 0;
    for (int64_t i = b; i < e; ++i) s += buf_[i * kLine];
    sums[tid] = s;
  });
  for (uint64_t s : sums) sink_ += s;  // keeps the reads
}

double TimeAttendRound(AttnCaches& caches, ThreadPool& pool, CacheFlusher* flush) {
  const int64_t q_dim = caches.shape.q_dim();
  const int64_t B = static_cast<int64_t>(caches.seqs.size());
  const int64_t pos = caches.shape.max_tokens - 1;
  // One batched decode call when every format can (work units over all sequences, as a serving
  // loop would issue it); else each sequence's own Attend in turn.
  const bool batched = std::all_of(caches.seqs.begin(), caches.seqs.end(),
                                   [](const auto& c) { return c->HasAttendPartial(); });
  std::vector<DecodeSeq> seqs;
  for (const auto& c : caches.seqs) seqs.push_back(DecodeSeq{c.get(), pos + 1});
  if (flush) flush->Flush(pool);
  const auto t0 = Clock::now();
  if (batched) {
    DecodeAttention(seqs, 0, ConstMat(caches.q.data(), B, q_dim), Mat(caches.out.data(), B, q_dim),
                    pool);
  } else {
    for (int64_t b = 0; b < B; ++b) {
      caches.seqs[b]->Attend(0, ConstMat(caches.q.data() + b * q_dim, 1, q_dim), pos,
                             Mat(caches.out.data() + b * q_dim, 1, q_dim), pool);
    }
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

namespace {
// The result of `caches` from its round times (median), checking the outputs are finite.
AttnResult Summarize(const AttnCaches& caches, const std::vector<double>& times) {
  for (float x : caches.out)
    CQKV_CHECK(std::isfinite(x), "{}: Attend wrote a non-finite output", caches.format.name);
  AttnResult res;
  const KvCache& first = *caches.seqs.front();
  res.format = caches.format.name;
  res.seconds = Median(times);
  const double tokens = static_cast<double>(caches.shape.max_tokens) * caches.seqs.size();
  res.bytes_per_token = first.BytesPerToken() / caches.shape.n_layers;
  res.bits_per_channel = first.BitsPerChannel();
  res.ns_per_token = res.seconds * 1e9 / tokens;
  res.gbps = res.bytes_per_token * tokens / res.seconds / 1e9;
  return res;
}

// Untimed rounds: page faults, lazily built tables, the first format's clock ramp.
void WarmUp(AttnCaches& caches, ThreadPool& pool, CacheFlusher* flush) {
  for (int r = 0; r < 2; ++r) TimeAttendRound(caches, pool, flush);
}
}  // namespace

AttnResult TimeAttend(AttnCaches& caches, int reps, ThreadPool& pool, CacheFlusher* flush) {
  CQKV_CHECK(reps >= 1, "--reps must be >= 1, got {}", reps);
  WarmUp(caches, pool, flush);
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) times.push_back(TimeAttendRound(caches, pool, flush));
  return Summarize(caches, times);
}

double MeasureStreamReadGBs(ThreadPool& pool, size_t bytes, int reps) {
  const size_t n = std::max<size_t>(bytes / sizeof(float), 1024);
  std::vector<float> buf(n, 1.0f);
  std::vector<double> partial(static_cast<size_t>(pool.size()), 0.0);
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    const auto t0 = Clock::now();
    pool.ParallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e, int tid) {
      // Eight independent accumulators: the compiler keeps them in one vector register, so the
      // loop is bound by loads, not by the latency of a single add chain.
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = b;
      for (; i + 8 <= e; i += 8) {
        for (int j = 0; j < 8; ++j) s[j] += buf[i + j];
      }
      for (; i < e; ++i) s[0] += buf[i];
      partial[tid] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    CQKV_CHECK(partial[0] >= 0, "stream kernel: impossible negative sum");  // keeps the loop
    best = std::max(best, n * sizeof(float) / sec / 1e9);
  }
  return best;
}

KvShape AttnBenchOptions::Shape() const {
  KvShape s;
  s.n_layers = 1;
  s.n_heads = n_heads;
  s.n_kv_heads = n_kv_heads;
  s.head_dim = head_dim;
  s.max_tokens = ctx;
  return s;
}

AttnBenchReport RunAttnBench(const AttnBenchOptions& options, ThreadPool& pool,
                             void (*log)(const std::string&)) {
  CQKV_CHECK(options.ctx >= 1 && options.batch >= 1, "--ctx and --batch must be >= 1");
  CQKV_CHECK(options.n_kv_heads >= 1 && options.n_heads % options.n_kv_heads == 0,
             "--heads {} is not a multiple of --kv-heads {}", options.n_heads, options.n_kv_heads);
  AttnBenchReport rep;
  rep.options = options;
  rep.threads = pool.size();
  std::vector<AttnFormat> formats = options.formats;
  const bool has_fp16 =
      std::any_of(formats.begin(), formats.end(), [](const auto& f) { return f.name == "fp16"; });
  if (!has_fp16) formats.insert(formats.begin(), ParseAttnFormat("fp16"));
  rep.options.formats = formats;
  const KvShape shape = options.Shape();
  std::unique_ptr<CacheFlusher> flush;
  if (!options.warm) {
    flush = std::make_unique<CacheFlusher>(options.flush_bytes);
    rep.flush_bytes = flush->bytes();
  }
  CQKV_CHECK(options.reps >= 1, "--reps must be >= 1, got {}", options.reps);
  double total_bytes = 0;
  for (const AttnFormat& f : formats) total_bytes += EstimateCacheBytes(f, shape) * options.batch;
  rep.interleaved = total_bytes <= options.interleave_max_bytes;
  const auto progress = [&](const AttnResult& r) {
    if (log) log(fmt::format("{}: {:.3f} ns/token, {:.2f} GB/s", r.format, r.ns_per_token, r.gbps));
  };
  if (rep.interleaved) {
    // Every format's caches at once, rounds in turn (fp16, f1, f2, ..., fp16, f1, ...): a
    // machine whose speed drifts over a run (a shared VM) slows every format alike, and each
    // ratio is the median of the per-round ratios to the fp16 round beside it.
    std::vector<AttnCaches> all;
    for (const AttnFormat& f : formats) {
      all.push_back(BuildAttnCaches(f, shape, options.batch, pool));
      WarmUp(all.back(), pool, flush.get());
    }
    std::vector<std::vector<double>> times(formats.size());
    for (int r = 0; r < options.reps; ++r) {
      for (size_t i = 0; i < all.size(); ++i) {
        times[i].push_back(TimeAttendRound(all[i], pool, flush.get()));
      }
    }
    const size_t i16 =
        static_cast<size_t>(std::find_if(formats.begin(), formats.end(),
                                         [](const auto& f) { return f.name == "fp16"; }) -
                            formats.begin());
    for (size_t i = 0; i < all.size(); ++i) {
      AttnResult r = Summarize(all[i], times[i]);
      std::vector<double> ratios;
      for (int k = 0; k < options.reps; ++k) ratios.push_back(times[i16][k] / times[i][k]);
      r.ratio_vs_fp16 = Median(ratios);
      rep.results.push_back(r);
      progress(r);
    }
  } else {
    // Too large to hold together: one format at a time, freed before the next is built.
    double fp16_seconds = 0;
    for (const AttnFormat& f : formats) {
      AttnResult r;
      {
        AttnCaches caches = BuildAttnCaches(f, shape, options.batch, pool);
        r = TimeAttend(caches, options.reps, pool, flush.get());
      }
      if (f.name == "fp16") fp16_seconds = r.seconds;
      rep.results.push_back(r);
      progress(r);  // as each format finishes: the sequential path is the long one
    }
    for (AttnResult& r : rep.results) r.ratio_vs_fp16 = fp16_seconds / r.seconds;
  }

  rep.stream_gbps = MeasureStreamReadGBs(pool, options.stream_bytes);
  return rep;
}

std::string AttnBenchMarkdown(const AttnBenchReport& report) {
  const AttnBenchOptions& o = report.options;
  std::string s = fmt::format(
      "decode attention: ctx {} x batch {}, {} heads / {} KV heads x {}, 1 layer, {} threads, "
      "median of {} reps{}, {}; stream read {:.2f} GB/s\n\n",
      o.ctx, o.batch, o.n_heads, o.n_kv_heads, o.head_dim, report.threads, o.reps,
      report.interleaved ? " (formats interleaved)" : "",
      o.warm ? "warm caches"
             : fmt::format("cold caches ({} MiB flushed per round)", report.flush_bytes >> 20),
      report.stream_gbps);
  s += "| format | bits/ch | bytes/token | ns/token | GB/s | % stream | vs fp16 |\n";
  s += "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const AttnResult& r : report.results) {
    s += fmt::format("| {} | {:.3f} | {:.1f} | {:.3f} | {:.2f} | {:.1f} | {:.2f}x |\n", r.format,
                     r.bits_per_channel, r.bytes_per_token, r.ns_per_token, r.gbps,
                     100.0 * r.gbps / report.stream_gbps, r.ratio_vs_fp16);
  }
  return s;
}

std::string AttnBenchJson(const AttnBenchReport& report) {
  const AttnBenchOptions& o = report.options;
  nlohmann::json j;
  j["stream_gbps"] = report.stream_gbps;
  j["ctx"] = o.ctx;
  j["batch"] = o.batch;
  j["threads"] = report.threads;
  j["n_heads"] = o.n_heads;
  j["n_kv_heads"] = o.n_kv_heads;
  j["head_dim"] = o.head_dim;
  j["n_layers"] = 1;
  j["reps"] = o.reps;
  j["caches"] = o.warm ? "warm" : "cold";
  j["interleaved"] = report.interleaved;
  j["ratio_formula"] = report.interleaved
                           ? "median over rounds of fp16_round_seconds / round_seconds"
                           : "fp16 median_round_seconds / median_round_seconds";
  j["flush_bytes"] = report.flush_bytes;
  j["gbps_formula"] = "bytes_per_token * ctx * batch / median_round_seconds / 1e9";
  j["results"] = nlohmann::json::array();
  for (const AttnResult& r : report.results) {
    j["results"].push_back({{"format", r.format},
                            {"ns_per_token", r.ns_per_token},
                            {"gbps", r.gbps},
                            {"ratio_vs_fp16", r.ratio_vs_fp16},
                            {"bytes_per_token", r.bytes_per_token},
                            {"bits_per_channel", r.bits_per_channel},
                            {"seconds", r.seconds}});
  }
  return j.dump(2);
}

}  // namespace cqkv
