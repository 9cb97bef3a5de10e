// The OpenAI-compatible HTTP API as pure functions over JSON text: request bodies of
// /v1/completions and /v1/chat/completions in, cqkv::Request sampling values out; responses,
// server-sent-event chunks, errors, /v1/models and Prometheus /metrics text out. No sockets and
// no Engine here (chat templates and tokenization come in as values), so all of it is unit-tested
// without a model; http_server.h binds it to an Engine and httplib.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cqkv/engine.h"

namespace cqkv::serve {

// An HTTP error in OpenAI's shape; parsers and handlers throw it, the server formats it.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "",
           std::string type = "invalid_request_error", std::string code = "")
      : std::runtime_error(message),
        status(status),
        param(std::move(param)),
        type(std::move(type)),
        code(std::move(code)) {}
  int status;
  std::string param;  // the offending request field, "" when none
  std::string type;   // invalid_request_error, authentication_error, server_error, ...
  std::string code;   // machine-readable detail ("context_length_exceeded"), "" when none
};

// `{"error": {"message", "type", "param", "code"}}` (param and code null when empty).
std::string FormatError(const ApiError& e);

enum class Endpoint { kCompletions, kChat };

// A validated request body. Fields absent from the body keep SamplingParams' defaults, except
// max_tokens (resolved by ResolveMaxTokens) and seed (random per request unless given).
struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                   // as sent, "" when absent
  std::string prompt;                  // completions: the prompt text
  std::vector<int32_t> prompt_tokens;  // completions: a prompt given as token ids
  std::vector<ChatMessage> messages;   // chat
  std::optional<int> max_tokens;       // absent: endpoint default (ResolveMaxTokens)
  std::optional<uint64_t> seed;
  SamplingParams sampling;  // max_tokens and seed not yet resolved
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
};

// Throw ApiError(400) naming the field for malformed JSON, a known field of the wrong type or
// out of range, n != 1, echo true, a missing prompt/messages or an unknown chat role. Unknown
// fields are ignored.
ApiRequest ParseCompletionRequest(std::string_view body);
ApiRequest ParseChatRequest(std::string_view body);

inline constexpr int kDefaultCompletionMaxTokens = 16;  // as OpenAI's /v1/completions
inline constexpr int kDefaultChatMaxTokens = 128;

// max_tokens as given, else 16 (completions) or min(128, context - prompt) for chat. Throws
// ApiError(400, code context_length_exceeded) when the prompt leaves no room in the context.
int ResolveMaxTokens(const ApiRequest& r, int prompt_tokens, int context_length);

// "stop" / "length" for a finished request; kCancelled and kError have no OpenAI name and map to
// "stop" only if asked (the server reports them as errors instead).
const char* FinishReasonString(FinishReason r);

// What every response object of one request shares.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};
// "cmpl-<16 hex>" or "chatcmpl-<16 hex>" from a caller-chosen random number.
std::string MakeResponseId(Endpoint e, uint64_t random_bits);

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// The whole non-streaming response body (object text_completion / chat.completion).
std::string FormatResponse(const ResponseMeta& m, const std::string& text, FinishReason finish,
                           const Usage& usage);

// Streaming: one `data: {json}\n\n` event per call. A chat stream opens with RoleChunk; content
// chunks carry text; the final chunk has an empty delta and the finish reason; with
// include_usage a usage chunk (empty choices) follows; SseDone() closes the stream.
std::string SseRoleChunk(const ResponseMeta& m);
std::string SseTextChunk(const ResponseMeta& m, const std::string& text);
std::string SseFinalChunk(const ResponseMeta& m, FinishReason finish);
std::string SseUsageChunk(const ResponseMeta& m, const Usage& usage);
std::string SseError(const ApiError& e);  // `data: {"error": ...}\n\n` for failures mid-stream
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// GET /v1/models: one model.
std::string FormatModels(const std::string& model_id, int64_t created);

// Prometheus text exposition (version 0.0.4) of the engine's counters and gauges.
std::string FormatMetrics(const EngineStats& s);

}  // namespace cqkv::serve
