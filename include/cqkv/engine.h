// The embeddable cqkv inference engine: load a LLaMA-family model with a (compressed) KV cache
// format, submit many requests, and receive their tokens through callbacks while one batched
// forward step advances every running sequence. This header and error.h are the public API.
//
// Threading: Submit, Cancel, Stats and the text helpers may be called from any thread. Steps run
// either on the engine's own thread (Start/Stop) or on the caller's (Step/RunUntilIdle), never
// both. Callbacks run on the stepping thread and must return quickly (copy, enqueue, return).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cqkv/error.h"

namespace cqkv {

// The context an engine gets when EngineConfig::max_context is 0 and the model claims more.
inline constexpr int kDefaultMaxContext = 32768;

struct EngineConfig {
  std::string model_path;      // GGUF file or llama2.c checkpoint
  std::string tokenizer_path;  // optional: tokenizer.bin, tokenizer.json or GGUF vocabulary
  std::string kv = "fp16";     // KV cache format spec, e.g. "fp16", "cq:FILE.cqcb", "int4-channel"
  int64_t kv_memory_bytes = int64_t{1} << 30;  // budget for every sequence's KV pages together
  int page_tokens = 256;  // tokens per KV page (a multiple of 256, the decode token block)
  // Longest prompt + completion per sequence; 0 = the model's context, at most
  // kDefaultMaxContext (a file may claim 2^30 positions; per-context tables follow this value).
  // More than the model's context is an error.
  int max_context = 0;
  int threads = 0;             // compute threads; 0 = all cores
  int max_batch_tokens = 512;  // tokens per step over all sequences (chunked prefill budget)
  int max_running = 256;       // sequences advanced together at most
  int max_queue = 256;         // requests waiting for admission at most; more are refused
};

// Per-request sampling and stopping. temperature 0 is greedy (top_k/top_p/min_p ignored).
struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;       // <= 0: no cut
  float top_p = 0.95f;  // >= 1: no cut
  float min_p = 0.0f;   // drop tokens with p < min_p * p_max; 0: no cut
  uint64_t seed = 42;
  int max_tokens = 128;           // completion tokens at most, >= 1
  std::vector<std::string> stop;  // the completion ends before the first of these
  bool ignore_eos = false;        // keep going past the end-of-sequence token
};

enum class FinishReason {
  kNone,       // still running
  kStop,       // EOS or a stop string
  kLength,     // max_tokens or the context was reached
  kCancelled,  // Cancel() or engine shutdown
  kError,      // see TokenEvent::error
};
const char* FinishReasonName(FinishReason r);  // "stop", "length", "cancelled", "error"

// One callback per generated token, and a final one with done = true.
struct TokenEvent {
  int64_t request_id = 0;
  int32_t token = -1;  // the sampled token (-1 on the final event)
  std::string text;    // new completion text (held back while it may start a stop string)
  bool done = false;
  FinishReason finish = FinishReason::kNone;
  std::string error;  // set when finish == kError
  int prompt_tokens = 0;
  int completion_tokens = 0;
};
using TokenCallback = std::function<void(const TokenEvent&)>;

struct Request {
  std::string prompt;                  // tokenized with BOS unless prompt_tokens is given
  std::vector<int32_t> prompt_tokens;  // used as is when non-empty
  SamplingParams sampling;
  TokenCallback on_token;
};

struct EngineStats {
  int running = 0;  // sequences holding KV pages
  int queued = 0;   // waiting for admission (including preempted ones)
  int64_t pages_total = 0, pages_used = 0;
  int64_t page_bytes = 0;
  int64_t kv_bytes_used = 0;  // pages in use plus per-sequence fixed buffers
  int64_t kv_budget_bytes = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  int64_t requests_finished = 0;
  int64_t preemptions = 0;
  double decode_tok_s = 0;  // generated tokens per second over the recent steps
};

struct ModelInfo {
  std::string name;  // file name without directories
  std::string arch;
  int64_t n_params = 0;
  int vocab_size = 0;
  int context_length = 0;  // max prompt + completion tokens per sequence
  std::string kv_format;
  double kv_bits_per_channel = 0;
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class Engine {
 public:
  // Loads the model, the KV format and the page pool. Throws cqkv::Error naming what is wrong.
  static std::unique_ptr<Engine> Create(const EngineConfig& config);
  virtual ~Engine() = default;

  // Queues a request and returns its id. Throws Error: kInvalidArgument for an empty or too long
  // prompt or bad sampling values, kResourceExhausted when the queue is full, kUnavailable after
  // Stop.
  virtual int64_t Submit(Request request) = 0;
  // Ends a request (queued or running); its callback gets a final kCancelled event and its pages
  // return to the pool. Unknown or finished ids are ignored.
  virtual void Cancel(int64_t request_id) = 0;

  // Runs one batched step (admission, prefill chunks and decode of every running sequence);
  // returns false when there was nothing to do.
  virtual bool Step() = 0;
  // Steps until no request is queued or running.
  virtual void RunUntilIdle() = 0;
  // Steps on a background thread until Stop.
  virtual void Start() = 0;
  // Refuses new requests, lets running and queued ones finish for up to `drain`, cancels the
  // rest, then joins the background thread.
  virtual void Stop(std::chrono::milliseconds drain) = 0;
  void Stop() { Stop(std::chrono::milliseconds(0)); }

  virtual EngineStats Stats() const = 0;
  virtual const ModelInfo& Info() const = 0;

  virtual std::vector<int32_t> Tokenize(const std::string& text, bool add_bos) const = 0;
  virtual std::string Detokenize(const std::vector<int32_t>& tokens) const = 0;
  // The prompt text of a chat: the model's template when it is a known one (llama-2, llama-3,
  // chatml), else a plain "role: content" template; ends with the assistant's turn opening.
  virtual std::string ApplyChatTemplate(const std::vector<ChatMessage>& messages) const = 0;
  // The tokens of ApplyChatTemplate(messages) as llama.cpp's server makes them: the template's
  // markers (<|im_start|>, <|eot_id|>, </s>, ...) become their special tokens instead of being
  // spelled out as text, and BOS comes first when the vocabulary adds one.
  virtual std::vector<int32_t> TokenizeChat(const std::vector<ChatMessage>& messages) const = 0;
};

}  // namespace cqkv
