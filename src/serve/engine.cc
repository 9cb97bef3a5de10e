// The engine behind include/cqkv/engine.h: a continuous-batching scheduler over one model, one
// KV page pool and LlamaForward::ForwardBatch.
//
// Each step: cancelled requests end; queued requests are admitted (oldest first) while their
// prompt's pages fit the pool; every running sequence gets its pending tokens (one for decoding
// sequences, a chunk of the prompt for prefilling ones, within max_batch_tokens); their pages are
// reserved before the forward pass, preempting the newest sequences (pages freed, tokens kept for
// recomputation) when the pool runs dry; one ForwardBatch runs; sequences whose chunk reached the
// end sample a token. Callbacks run after the step, outside the lock.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cqkv/engine.h"
#include "loader/loader.h"
#include "model/fingerprint.h"
#include "model/kv_shape.h"
#include "model/llama.h"
#include "model/model.h"
#include "serve/chat_template.h"
#include "serve/sequence.h"
#include "util/error.h"

namespace cqkv {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      break;
  }
  return "none";
}

namespace {

using Clock = std::chrono::steady_clock;

void CheckSampling(const SamplingParams& p) {
  CQKV_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f && p.temperature <= 100.0f,
             "temperature {} is not in [0, 100]", p.temperature);
  CQKV_CHECK(std::isfinite(p.top_p) && p.top_p > 0.0f && p.top_p <= 1.0f,
             "top_p {} is not in (0, 1]", p.top_p);
  CQKV_CHECK(std::isfinite(p.min_p) && p.min_p >= 0.0f && p.min_p <= 1.0f,
             "min_p {} is not in [0, 1]", p.min_p);
  CQKV_CHECK(p.max_tokens >= 1, "max_tokens {} must be at least 1", p.max_tokens);
}

int64_t CountParams(const ModelConfig& c) {
  // Embedding and classifier, the layers' matrices and norms, the final norm.
  return int64_t{c.vocab_size} * c.dim * 2 + c.n_layers * (c.LayerMatrixWeights() + 2 * c.dim) +
         c.dim;
}

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineConfig& cfg)
      : cfg_(cfg),
        model_(LoadModel(cfg.model_path, cfg.tokenizer_path)),
        threads_(cfg.threads),
        fwd_(*model_, threads_) {
    const ModelConfig& mc = model_->config;
    model_->tok();  // throws when the model has no vocabulary
    CQKV_CHECK(cfg.max_context >= 0, "max_context {} must be >= 0", cfg.max_context);
    CQKV_CHECK(cfg.max_batch_tokens >= 1 && cfg.max_running >= 1 && cfg.max_queue >= 0,
               "engine limits must be positive (max_batch_tokens {}, max_running {}, max_queue "
               "{})",
               cfg.max_batch_tokens, cfg.max_running, cfg.max_queue);
    CQKV_CHECK(cfg.max_context <= mc.max_seq_len,
               "a context of {} tokens was requested but model {} has a context of {}",
               cfg.max_context, cfg.model_path, mc.max_seq_len);
    ctx_ = cfg.max_context > 0 ? cfg.max_context : std::min(mc.max_seq_len, kDefaultMaxContext);
    KvShape shape = KvShapeFor(mc, ctx_);
    shape.model_fingerprint = ModelFingerprint(*model_);
    shape.page_tokens = cfg.page_tokens;
    proto_ = MakeKvCache(ParseKvSpec(cfg.kv), shape);  // the one place the spec is parsed
    const int64_t page_bytes = proto_->PageBytes();
    CQKV_CHECK(page_bytes > 0, "KV format '{}' does not store its tokens in pages yet", cfg.kv);
    CQKV_CHECK(cfg.kv_memory_bytes >= page_bytes,
               "KV memory budget of {} bytes is smaller than one page ({} bytes of {} tokens)",
               cfg.kv_memory_bytes, page_bytes, cfg.page_tokens);
    pool_ = std::make_shared<PagePool>(page_bytes, cfg.kv_memory_bytes);
    // Codebooks are held once for all sequences but still count against the budget.
    CQKV_CHECK(pool_->TryReserveBytes(proto_->SharedBytes()),
               "KV memory budget of {} bytes cannot hold the format's shared tables ({} bytes)",
               cfg.kv_memory_bytes, proto_->SharedBytes());
    chat_ = DetectChatTemplate(model_->tok().vocab().chat_template);

    info_.name = std::filesystem::path(cfg.model_path).filename().string();
    info_.arch = mc.arch;
    info_.n_params = CountParams(mc);
    info_.vocab_size = mc.vocab_size;
    info_.context_length = ctx_;
    info_.kv_format = cfg.kv;
    info_.kv_bits_per_channel = proto_->BitsPerChannel();
    stats_.pages_total = pool_->capacity();
    stats_.page_bytes = page_bytes;
    stats_.kv_budget_bytes = cfg.kv_memory_bytes;
  }

  ~EngineImpl() override { Stop(std::chrono::milliseconds(0)); }
  using Engine::Stop;

  int64_t Submit(Request r) override {
    auto seq = std::make_unique<Sequence>();
    seq->tokens = r.prompt_tokens.empty() ? Tokenize(r.prompt, true) : std::move(r.prompt_tokens);
    CQKV_CHECK(!seq->tokens.empty(), "the prompt is empty");
    for (int32_t t : seq->tokens) {
      CQKV_CHECK(t >= 0 && t < model_->config.vocab_size,
                 "prompt token id {} is outside the vocabulary (size {})", t,
                 model_->config.vocab_size);
    }
    CQKV_CHECK(static_cast<int64_t>(seq->tokens.size()) < ctx_,
               "the prompt has {} tokens; the context holds {} (prompt + completion)",
               seq->tokens.size(), ctx_);
    CheckSampling(r.sampling);
    // What this sequence alone would hold: its pages, its fixed buffers and the shared tables
    // already charged (a prompt that cannot fit an empty pool would wait in the queue forever).
    const int64_t need = proto_->PagesFor(static_cast<int64_t>(seq->tokens.size()) + 1) +
                         pool_->PagesForBytes(proto_->FixedBytes() + proto_->SharedBytes());
    CQKV_CHECK(need <= pool_->capacity(),
               "the prompt needs {} KV pages; the KV memory budget holds {}", need,
               pool_->capacity());
    seq->prompt_len = static_cast<int>(seq->tokens.size());
    seq->params = r.sampling;
    seq->sampler = Sampler(SamplerConfig{r.sampling.temperature, r.sampling.top_k, r.sampling.top_p,
                                         r.sampling.min_p, r.sampling.seed});
    seq->text = TextStream(r.sampling.stop);
    seq->on_token = std::move(r.on_token);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw Error("the engine is shutting down", ErrorCode::kUnavailable);
    if (static_cast<int>(queue_.size()) >= cfg_.max_queue) {
      throw Error(fmt::format("the request queue is full ({} waiting)", queue_.size()),
                  ErrorCode::kResourceExhausted);
    }
    seq->id = next_id_++;
    const int64_t id = seq->id;
    queue_.push_back(std::move(seq));
    stats_.queued = static_cast<int>(queue_.size());
    cv_.notify_all();
    return id;
  }

  void Cancel(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_.push_back(id);
    cv_.notify_all();
  }

  bool Step() override;

  void RunUntilIdle() override {
    while (Step()) {
    }
  }

  void Start() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_.joinable()) return;
    quit_ = false;
    thread_ = std::thread([this] {
      while (true) {
        if (Step()) continue;
        std::unique_lock<std::mutex> lock(mu_);
        if (quit_) return;
        cv_.wait_for(lock, std::chrono::milliseconds(50),
                     [this] { return quit_ || !queue_.empty() || !cancel_.empty(); });
      }
    });
  }

  void Stop(std::chrono::milliseconds drain) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    const bool background = thread_.joinable();
    const auto deadline = Clock::now() + drain;
    auto idle = [this] {
      std::lock_guard<std::mutex> lock(mu_);
      return queue_.empty() && stats_.running == 0 && cancel_.empty();
    };
    while (!idle() && Clock::now() < deadline) {
      if (background) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        Step();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancel_all_ = true;
      cv_.notify_all();
    }
    while (!idle()) {
      if (background) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        Step();
      }
    }
    if (background) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        quit_ = true;
        cv_.notify_all();
      }
      thread_.join();
    }
  }

  EngineStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    EngineStats s = stats_;
    s.queued = static_cast<int>(queue_.size());
    s.pages_used = pool_->used();
    s.kv_bytes_used = s.pages_used * pool_->page_bytes() + pool_->reserved_bytes();
    return s;
  }

  const ModelInfo& Info() const override { return info_; }

  std::vector<int32_t> Tokenize(const std::string& text, bool add_bos) const override {
    return model_->tok().Encode(text, add_bos);
  }

  std::string Detokenize(const std::vector<int32_t>& tokens) const override {
    std::string out;
    for (int32_t t : tokens) out += model_->tok().Decode(t);
    return out;
  }

  std::string ApplyChatTemplate(const std::vector<ChatMessage>& messages) const override {
    return RenderChat(chat_, messages);
  }

  std::vector<int32_t> TokenizeChat(const std::vector<ChatMessage>& messages) const override {
    const Tokenizer& tok = model_->tok();
    return tok.Encode(RenderChat(chat_, messages),
                      EncodeOptions{tok.vocab().add_bos, /*parse_special=*/true});
  }

 private:
  // A callback to run once the step is over (outside the lock).
  struct Emit {
    Sequence* seq;
    TokenEvent event;
  };

  void Finish(Sequence& s, FinishReason why, std::vector<Emit>& out, std::string error = "") {
    TokenEvent e;
    e.request_id = s.id;
    e.done = true;
    e.finish = why;
    e.error = std::move(error);
    if (why != FinishReason::kCancelled && why != FinishReason::kError) e.text = s.text.Flush();
    e.prompt_tokens = s.prompt_len;
    e.completion_tokens = s.generated;
    out.push_back({&s, std::move(e)});
  }

  // Admits queued sequences, oldest first, while their pages fit. Called with mu_ held.
  void AdmitLocked() {
    while (!queue_.empty() && static_cast<int>(running_.size()) < cfg_.max_running) {
      Sequence& s = *queue_.front();
      auto cache = proto_->NewSibling(pool_);
      if (!cache->TryAdmit(static_cast<int64_t>(s.tokens.size()))) return;
      s.cache = std::move(cache);
      running_.push_back(std::move(queue_.front()));
      queue_.pop_front();
      stats_.running = static_cast<int>(running_.size());  // Stop() must not see a gap
    }
  }

  // Puts the newest running sequence back at the queue's front, its pages freed.
  void PreemptNewest() {
    running_.back()->cache.reset();
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_front(std::move(running_.back()));
    running_.pop_back();
    ++stats_.preemptions;
  }

  void RecordStep(int64_t prompt_tokens, int64_t generated) {
    const auto now = Clock::now();
    rate_.push_back({now, generated});
    while (!rate_.empty() && now - rate_.front().first > std::chrono::seconds(10)) {
      rate_.pop_front();
    }
    int64_t sum = 0;
    for (const auto& r : rate_) sum += r.second;
    const double span =
        rate_.size() > 1 ? std::chrono::duration<double>(now - rate_.front().first).count() : 0;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.prompt_tokens_total += prompt_tokens;
    stats_.generated_tokens_total += generated;
    stats_.decode_tok_s = span > 0 ? (sum - rate_.front().second) / span : 0.0;
    stats_.running = static_cast<int>(running_.size());
  }

  EngineConfig cfg_;
  std::unique_ptr<Model> model_;
  ThreadPool threads_;
  LlamaForward fwd_;
  int64_t ctx_ = 0;
  std::unique_ptr<KvCache> proto_;  // never holds tokens: the format and shape to copy
  std::shared_ptr<PagePool> pool_;
  ChatTemplateKind chat_ = ChatTemplateKind::kPlain;
  ModelInfo info_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> queue_;  // mu_
  std::vector<int64_t> cancel_;                  // mu_
  bool cancel_all_ = false;                      // mu_
  bool stopping_ = false;                        // mu_
  bool quit_ = false;                            // mu_
  int64_t next_id_ = 1;                          // mu_
  EngineStats stats_;                            // mu_
  std::thread thread_;

  // Owned by the stepping thread.
  // In admission order (admission appends, removal keeps the order): the back is the newest.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::deque<std::pair<Clock::time_point, int64_t>> rate_;  // (step end, tokens generated)
  std::vector<float> logits_;                               // (sampling items, vocab)
};

bool EngineImpl::Step() {
  std::vector<Emit> emits;
  std::vector<std::unique_ptr<Sequence>> done;
  // 1. Cancellations (queued or running), then admission.
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto cancelled = [&](int64_t id) {
      return cancel_all_ || std::find(cancel_.begin(), cancel_.end(), id) != cancel_.end();
    };
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (cancelled((*it)->id)) {
        Finish(**it, FinishReason::kCancelled, emits);
        done.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = running_.begin(); it != running_.end();) {
      if (cancelled((*it)->id)) {
        (*it)->cache.reset();
        Finish(**it, FinishReason::kCancelled, emits);
        done.push_back(std::move(*it));
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    cancel_.clear();
    cancel_all_ = false;
    AdmitLocked();
  }

  // 2. Plan: decoding sequences first (one token each), then prompt chunks in admission order.
  struct Planned {
    Sequence* seq;
    int64_t n;
  };
  std::vector<Planned> plan;
  bool planned = false;
  while (!planned) {
    plan.clear();
    int64_t budget = cfg_.max_batch_tokens;
    for (auto& s : running_) {
      if (s->pending() == 1) {
        plan.push_back({s.get(), 1});
        --budget;
      }
    }
    for (auto& s : running_) {
      if (s->pending() > 1 && budget > 0) {
        const int64_t n = std::min(s->pending(), budget);
        plan.push_back({s.get(), n});
        budget -= n;
      }
    }
    // Reserve pages, oldest first; when the pool runs dry, preempt the newest and replan.
    planned = true;
    for (const Planned& p : plan) {
      if (p.seq->cache->TryReserve(p.seq->cached() + p.n)) continue;
      if (running_.size() == 1) {
        // Alone and still out of pages: the budget cannot hold this sequence any longer.
        running_[0]->cache.reset();
        Finish(*running_[0], FinishReason::kLength, emits);
        done.push_back(std::move(running_[0]));
        running_.clear();
      } else {
        PreemptNewest();
      }
      planned = false;
      break;
    }
  }

  // 3. One forward pass for the whole batch; sampling where a chunk reached the sequence's end.
  const int64_t V = model_->config.vocab_size;
  int64_t n_sample = 0;
  for (const Planned& p : plan) n_sample += p.n == p.seq->pending();
  logits_.resize(static_cast<size_t>(std::max<int64_t>(1, n_sample) * V));
  std::vector<BatchItem> items;
  int64_t row = 0, prompt_tokens = 0, generated = 0;
  for (const Planned& p : plan) {
    const bool sample = p.n == p.seq->pending();
    const std::span<const int32_t> toks(p.seq->tokens.data() + p.seq->cached(),
                                        static_cast<size_t>(p.n));
    items.push_back({p.seq->cache.get(), toks,
                     sample ? Mat(logits_.data() + row * V, 1, V) : Mat(logits_.data(), 0, V)});
    row += sample;
    if (p.seq->generated == 0) prompt_tokens += p.n;
  }
  if (!items.empty()) {
    try {
      fwd_.ForwardBatch(items);
    } catch (const std::exception& e) {
      // A failed step ends every sequence in it: their caches may hold a partial step.
      for (const Planned& p : plan) {
        p.seq->cache.reset();
        Finish(*p.seq, FinishReason::kError, emits, e.what());
      }  // released sequences leave running_ with the finished ones below
      items.clear();
      plan.clear();
    }
  }
  row = 0;
  for (const Planned& p : plan) {
    Sequence& s = *p.seq;
    if (s.pending() != 0) continue;  // a prompt chunk that did not reach the end
    const int32_t tok = s.sampler.Sample(logits_.data() + row++ * V, V);
    ++s.generated;
    ++generated;
    s.tokens.push_back(tok);
    FinishReason why = FinishReason::kNone;
    if (!s.params.ignore_eos && tok == model_->tok().eos()) {
      why = FinishReason::kStop;  // EOS ends the completion without being part of it
    } else {
      TokenEvent e;
      e.request_id = s.id;
      e.token = tok;
      e.text = s.text.Push(model_->tok().Decode(tok));
      e.prompt_tokens = s.prompt_len;
      e.completion_tokens = s.generated;
      if (s.text.stopped()) why = FinishReason::kStop;
      emits.push_back({&s, std::move(e)});
    }
    if (why == FinishReason::kNone &&
        (s.generated >= s.params.max_tokens || static_cast<int64_t>(s.tokens.size()) >= ctx_)) {
      why = FinishReason::kLength;
    }
    if (why != FinishReason::kNone) {
      s.cache.reset();
      Finish(s, why, emits);
    }
  }
  // Sequences released this step (finished, failed) leave the running set.
  for (auto it = running_.begin(); it != running_.end();) {
    if (!(*it)->cache) {
      done.push_back(std::move(*it));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  RecordStep(prompt_tokens, generated);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.requests_finished += static_cast<int64_t>(done.size());
  }
  // 4. Callbacks, outside the lock; a throwing callback must not take the engine down.
  for (Emit& e : emits) {
    if (!e.seq->on_token) continue;
    try {
      e.seq->on_token(e.event);
    } catch (...) {
    }
  }
  return !emits.empty() || !items.empty();
}

}  // namespace

std::unique_ptr<Engine> Engine::Create(const EngineConfig& config) {
  return std::make_unique<EngineImpl>(config);
}

}  // namespace cqkv
