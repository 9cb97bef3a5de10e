#include "serve/openai_api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>

namespace cqkv::serve {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // keeps OpenAI's field order in responses

// Text from the model may hold invalid UTF-8 (byte tokens); it becomes U+FFFD, never a throw.
std::string Dump(const ojson& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

[[noreturn]] void Bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

const char* TypeName(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  return v.type_name();  // "string", "array", "object", "boolean", "null"
}

[[noreturn]] void WrongType(const std::string& name, const char* want, const json& got) {
  Bad(name, fmt::format("'{}' must be {}, got {}", name, want, TypeName(got)));
}

json ParseObject(std::string_view body) {
  if (body.empty()) Bad("", "the request body is empty; expected a JSON object");
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    Bad("", fmt::format("the request body is not valid JSON (byte {}): {}", e.byte, e.what()));
  } catch (const json::exception& e) {
    // out_of_range: a number beyond double's range (1E400) is the client's mistake, not a 500.
    Bad("", fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object())
    Bad("", fmt::format("the request body must be a JSON object, got {}", TypeName(j)));
  return j;
}

// The field, or nullptr when absent or null (OpenAI treats null as "use the default").
const json* Field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

int64_t GetInt(const json& v, const std::string& name) {
  if (!v.is_number_integer()) WrongType(name, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})
    Bad(name, fmt::format("'{}' is out of range", name));
  return v.get<int64_t>();
}

double GetNumber(const json& v, const std::string& name) {
  if (!v.is_number()) WrongType(name, "a number", v);
  return v.get<double>();
}

bool GetBool(const json& v, const std::string& name) {
  if (!v.is_boolean()) WrongType(name, "a boolean", v);
  return v.get<bool>();
}

std::string GetString(const json& v, const std::string& name) {
  if (!v.is_string()) WrongType(name, "a string", v);
  return v.get<std::string>();
}

double InRange(double x, double lo, double hi, const std::string& name) {
  if (!(x >= lo && x <= hi))
    Bad(name, fmt::format("'{}' must be in [{}, {}], got {}", name, lo, hi, x));
  return x;
}

std::vector<std::string> ParseStop(const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) Bad("stop", fmt::format("'stop' holds at most 4 strings, got {}", v.size()));
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(GetString(v[i], fmt::format("stop[{}]", i)));
  } else {
    WrongType("stop", "a string or an array of strings", v);
  }
  std::erase(out, std::string());
  return out;
}

// The fields both endpoints share.
void ParseCommon(const json& j, ApiRequest& r) {
  if (const json* v = Field(j, "model")) r.model = GetString(*v, "model");
  // max_completion_tokens is the newer chat name of the same limit.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = Field(j, name)) {
      const int64_t n = GetInt(*v, name);
      if (n < 1 || n > std::numeric_limits<int>::max())
        Bad(name, fmt::format("'{}' must be at least 1, got {}", name, n));
      r.max_tokens = static_cast<int>(n);
    }
  }
  SamplingParams& s = r.sampling;
  if (const json* v = Field(j, "temperature"))
    s.temperature = static_cast<float>(InRange(GetNumber(*v, "temperature"), 0, 2, "temperature"));
  if (const json* v = Field(j, "top_p"))
    s.top_p = static_cast<float>(InRange(GetNumber(*v, "top_p"), 0, 1, "top_p"));
  if (const json* v = Field(j, "min_p"))
    s.min_p = static_cast<float>(InRange(GetNumber(*v, "min_p"), 0, 1, "min_p"));
  if (const json* v = Field(j, "top_k")) {
    const int64_t k = GetInt(*v, "top_k");
    s.top_k = static_cast<int>(std::clamp<int64_t>(k, -1, std::numeric_limits<int>::max()));
  }
  if (const json* v = Field(j, "seed")) {
    if (!v->is_number_integer()) WrongType("seed", "an integer", *v);
    r.seed =
        v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (const json* v = Field(j, "stop")) s.stop = ParseStop(*v);
  if (const json* v = Field(j, "ignore_eos")) s.ignore_eos = GetBool(*v, "ignore_eos");
  if (const json* v = Field(j, "stream")) r.stream = GetBool(*v, "stream");
  if (const json* v = Field(j, "stream_options")) {
    if (!v->is_object()) WrongType("stream_options", "an object", *v);
    if (const json* u = Field(*v, "include_usage"))
      r.include_usage = GetBool(*u, "stream_options.include_usage");
  }
  if (const json* v = Field(j, "n")) {
    const int64_t n = GetInt(*v, "n");
    if (n != 1) Bad("n", fmt::format("only n = 1 is supported, got {}", n));
  }
  if (const json* v = Field(j, "echo")) {
    if (GetBool(*v, "echo")) Bad("echo", "'echo': true is not supported");
  }
}

std::string MessageContent(const json& v, const std::string& name) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) WrongType(name, "a string or an array of text parts", v);
  std::string text;  // [{"type": "text", "text": "..."}, ...] concatenated
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string part = fmt::format("{}[{}]", name, i);
    if (!v[i].is_object()) WrongType(part, "an object", v[i]);
    const json* type = Field(v[i], "type");
    if (!type || GetString(*type, part + ".type") != "text")
      Bad(part + ".type",
          fmt::format("'{}.type' must be \"text\" (the only part supported)", part));
    const json* t = Field(v[i], "text");
    if (!t) Bad(part + ".text", fmt::format("missing '{}.text'", part));
    text += GetString(*t, part + ".text");
  }
  return text;
}

ojson Header(const ResponseMeta& m, const char* object) {
  return ojson{{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

ojson UsageJson(const Usage& u) {
  return ojson{{"prompt_tokens", u.prompt_tokens},
               {"completion_tokens", u.completion_tokens},
               {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

ojson FinishJson(FinishReason f) {
  return f == FinishReason::kNone ? ojson(nullptr) : ojson(FinishReasonString(f));
}

// One streaming chunk with a single choice; `payload` is {"text": ...} or {"delta": ...}.
std::string Chunk(const ResponseMeta& m, ojson choice_fields, FinishReason finish) {
  const bool chat = m.endpoint == Endpoint::kChat;
  ojson j = Header(m, chat ? "chat.completion.chunk" : "text_completion");
  ojson choice{{"index", 0}};
  for (auto& [k, v] : choice_fields.items()) choice[k] = v;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = FinishJson(finish);
  j["choices"] = ojson::array({choice});
  return "data: " + Dump(j) + "\n\n";
}

}  // namespace

std::string FormatError(const ApiError& e) {
  const ojson j{{"error",
                 {{"message", e.what()},
                  {"type", e.type},
                  {"param", e.param.empty() ? ojson(nullptr) : ojson(e.param)},
                  {"code", e.code.empty() ? ojson(nullptr) : ojson(e.code)}}}};
  return Dump(j);
}

ApiRequest ParseCompletionRequest(std::string_view body) {
  const json j = ParseObject(body);
  ApiRequest r;
  r.endpoint = Endpoint::kCompletions;
  ParseCommon(j, r);
  const json* p = Field(j, "prompt");
  if (!p) Bad("prompt", "missing required field 'prompt'");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    r.prompt = (*p)[0].get<std::string>();
  } else if (p->is_array() && !p->empty() && std::all_of(p->begin(), p->end(), [](const json& t) {
               return t.is_number_integer();
             })) {
    for (const json& t : *p) {
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id > std::numeric_limits<int32_t>::max())
        Bad("prompt", "negative token id in 'prompt'");
      r.prompt_tokens.push_back(static_cast<int32_t>(id));
    }
  } else if (p->is_array() && p->size() > 1 && (*p)[0].is_string()) {
    Bad("prompt", fmt::format("only one prompt per request is supported, got {}", p->size()));
  } else {
    WrongType("prompt", "a string, an array of one string or an array of token ids", *p);
  }
  return r;
}

ApiRequest ParseChatRequest(std::string_view body) {
  const json j = ParseObject(body);
  ApiRequest r;
  r.endpoint = Endpoint::kChat;
  ParseCommon(j, r);
  const json* msgs = Field(j, "messages");
  if (!msgs) Bad("messages", "missing required field 'messages'");
  if (!msgs->is_array()) WrongType("messages", "an array", *msgs);
  if (msgs->empty()) Bad("messages", "'messages' must not be empty");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string name = fmt::format("messages[{}]", i);
    if (!m.is_object()) WrongType(name, "an object", m);
    const json* role = Field(m, "role");
    if (!role) Bad(name + ".role", fmt::format("missing '{}.role'", name));
    ChatMessage msg;
    msg.role = GetString(*role, name + ".role");
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      Bad(name + ".role",
          fmt::format("'{}.role' must be system, user or assistant, got '{}'", name, msg.role));
    const auto content = m.find("content");
    if (content == m.end()) Bad(name + ".content", fmt::format("missing '{}.content'", name));
    msg.content = MessageContent(*content, name + ".content");
    r.messages.push_back(std::move(msg));
  }
  return r;
}

int ResolveMaxTokens(const ApiRequest& r, int prompt_tokens, int context_length) {
  if (prompt_tokens >= context_length) {
    throw ApiError(400,
                   fmt::format("this model's context is {} tokens and the prompt has {}: no room "
                               "left for a completion",
                               context_length, prompt_tokens),
                   r.endpoint == Endpoint::kChat ? "messages" : "prompt", "invalid_request_error",
                   "context_length_exceeded");
  }
  if (r.max_tokens) return *r.max_tokens;
  const int room = context_length - prompt_tokens;
  return std::min(
      r.endpoint == Endpoint::kChat ? kDefaultChatMaxTokens : kDefaultCompletionMaxTokens, room);
}

const char* FinishReasonString(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
    case FinishReason::kStop:
    case FinishReason::kCancelled:
    case FinishReason::kError:
      break;
  }
  return "stop";
}

std::string MakeResponseId(Endpoint e, uint64_t random_bits) {
  return fmt::format("{}-{:016x}", e == Endpoint::kChat ? "chatcmpl" : "cmpl", random_bits);
}

std::string FormatResponse(const ResponseMeta& m, const std::string& text, FinishReason finish,
                           const Usage& usage) {
  const bool chat = m.endpoint == Endpoint::kChat;
  ojson j = Header(m, chat ? "chat.completion" : "text_completion");
  ojson choice{{"index", 0}};
  if (chat) {
    choice["message"] = ojson{{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = FinishReasonString(finish);
  j["choices"] = ojson::array({choice});
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string SseRoleChunk(const ResponseMeta& m) {
  return Chunk(m, ojson{{"delta", {{"role", "assistant"}, {"content", ""}}}}, FinishReason::kNone);
}

std::string SseTextChunk(const ResponseMeta& m, const std::string& text) {
  if (m.endpoint == Endpoint::kChat)
    return Chunk(m, ojson{{"delta", {{"content", text}}}}, FinishReason::kNone);
  return Chunk(m, ojson{{"text", text}}, FinishReason::kNone);
}

std::string SseFinalChunk(const ResponseMeta& m, FinishReason finish) {
  if (m.endpoint == Endpoint::kChat) return Chunk(m, ojson{{"delta", ojson::object()}}, finish);
  return Chunk(m, ojson{{"text", ""}}, finish);
}

std::string SseUsageChunk(const ResponseMeta& m, const Usage& usage) {
  ojson j = Header(m, m.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = ojson::array();
  j["usage"] = UsageJson(usage);
  return "data: " + Dump(j) + "\n\n";
}

std::string SseError(const ApiError& e) { return "data: " + FormatError(e) + "\n\n"; }

std::string FormatModels(const std::string& model_id, int64_t created) {
  const ojson j{
      {"object", "list"},
      {"data",
       ojson::array({ojson{
           {"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "cqkv"}}})}};
  return Dump(j);
}

std::string FormatMetrics(const EngineStats& s) {
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  metric("cqkv_sequences_running", "gauge", "Sequences being advanced (holding KV pages).",
         s.running);
  metric("cqkv_sequences_queued", "gauge",
         "Requests waiting for admission, preempted ones included.", s.queued);
  metric("cqkv_kv_pages_total", "gauge", "KV pages in the pool.", s.pages_total);
  metric("cqkv_kv_pages_used", "gauge", "KV pages held by sequences.", s.pages_used);
  metric("cqkv_kv_pages_free", "gauge", "KV pages free.", s.pages_total - s.pages_used);
  metric("cqkv_kv_page_bytes", "gauge", "Bytes per KV page.", s.page_bytes);
  metric("cqkv_kv_used_bytes", "gauge", "KV bytes in use: pages plus per-sequence buffers.",
         s.kv_bytes_used);
  metric("cqkv_kv_budget_bytes", "gauge", "KV memory budget in bytes.", s.kv_budget_bytes);
  metric("cqkv_prompt_tokens_total", "counter", "Prompt tokens processed.", s.prompt_tokens_total);
  metric("cqkv_generation_tokens_total", "counter", "Completion tokens generated.",
         s.generated_tokens_total);
  metric("cqkv_decode_tokens_per_second", "gauge", "Generated tokens per second over recent steps.",
         s.decode_tok_s);
  metric("cqkv_preemptions_total", "counter", "Sequences preempted for lack of KV pages.",
         s.preemptions);
  metric("cqkv_requests_finished_total", "counter", "Requests finished (any reason).",
         s.requests_finished);
  return out;
}

}  // namespace cqkv::serve
