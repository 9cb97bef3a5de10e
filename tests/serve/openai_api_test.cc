// The OpenAI API layer without sockets or an engine: request validation, response and SSE
// formatting, the error shape and the Prometheus text.
#include "serve/openai_api.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace cqkv::serve {
namespace {

using json = nlohmann::json;

// The ApiError a body provokes (status 0 when it parses).
ApiError ErrorOf(Endpoint e, const std::string& body) {
  try {
    if (e == Endpoint::kChat) {
      ParseChatRequest(body);
    } else {
      ParseCompletionRequest(body);
    }
  } catch (const ApiError& err) {
    return err;
  }
  return ApiError(0, "parsed");
}

void ExpectBad(Endpoint e, const std::string& body, const std::string& param) {
  const ApiError err = ErrorOf(e, body);
  EXPECT_EQ(err.status, 400) << body;
  EXPECT_EQ(err.param, param) << body << " -> " << err.what();
  EXPECT_EQ(err.type, "invalid_request_error");
  if (!param.empty()) {
    EXPECT_NE(std::string(err.what()).find(param), std::string::npos) << err.what();
  }
}

TEST(OpenAiParse, CompletionDefaultsAndFields) {
  ApiRequest r = ParseCompletionRequest(R"({"model": "m", "prompt": "Once upon"})");
  EXPECT_EQ(r.endpoint, Endpoint::kCompletions);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "Once upon");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.sampling.temperature, SamplingParams{}.temperature);
  EXPECT_EQ(ResolveMaxTokens(r, 3, 512), 16);
  EXPECT_EQ(ResolveMaxTokens(r, 500, 512), 12);  // the default never runs past the context

  r = ParseCompletionRequest(R"({"prompt": ["one"], "max_tokens": 7, "temperature": 0,
      "top_p": 0.5, "top_k": 3, "min_p": 0.1, "seed": 99, "stop": ["a", "", "b"], "stream": true,
      "stream_options": {"include_usage": true}, "n": 1, "echo": false, "ignore_eos": true,
      "logit_bias": {"1": 2}, "user": "x", "presence_penalty": null})");
  EXPECT_EQ(r.prompt, "one");
  EXPECT_EQ(*r.max_tokens, 7);
  EXPECT_EQ(ResolveMaxTokens(r, 3, 512), 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(*r.seed, 99u);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.sampling.ignore_eos);

  r = ParseCompletionRequest(R"({"prompt": [1, 15043, 3186], "stop": "\n"})");
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"\n"}));
  r = ParseCompletionRequest(R"({"prompt": "x", "max_completion_tokens": 5})");
  EXPECT_EQ(*r.max_tokens, 5);
}

TEST(OpenAiParse, MalformedBodies) {
  const auto C = Endpoint::kCompletions;
  ExpectBad(C, "", "");
  ExpectBad(C, "{\"prompt\": ", "");
  ExpectBad(C, "not json", "");
  ExpectBad(C, "[1, 2]", "");
  ExpectBad(C, R"({"model": "m"})", "prompt");
  ExpectBad(C, R"({"prompt": null})", "prompt");
  ExpectBad(C, R"({"prompt": 5})", "prompt");
  ExpectBad(C, R"({"prompt": ["a", "b"]})", "prompt");
  ExpectBad(C, R"({"prompt": [1, -2]})", "prompt");
  ExpectBad(C, R"({"prompt": "x", "max_tokens": "x"})", "max_tokens");
  ExpectBad(C, R"({"prompt": "x", "max_tokens": 0})", "max_tokens");
  ExpectBad(C, R"({"prompt": "x", "max_tokens": -3})", "max_tokens");
  ExpectBad(C, R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens");
  ExpectBad(C, R"({"prompt": "x", "temperature": "hot"})", "temperature");
  ExpectBad(C, R"({"prompt": "x", "temperature": 3})", "temperature");
  ExpectBad(C, R"({"prompt": "x", "top_p": 1.5})", "top_p");
  ExpectBad(C, R"({"prompt": "x", "top_k": 0.5})", "top_k");
  ExpectBad(C, R"({"prompt": "x", "min_p": -0.1})", "min_p");
  ExpectBad(C, R"({"prompt": "x", "seed": "s"})", "seed");
  ExpectBad(C, R"({"prompt": "x", "stop": 3})", "stop");
  ExpectBad(C, R"({"prompt": "x", "stop": ["a", 1]})", "stop[1]");
  ExpectBad(C, R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop");
  ExpectBad(C, R"({"prompt": "x", "stream": "yes"})", "stream");
  ExpectBad(C, R"({"prompt": "x", "stream_options": 1})", "stream_options");
  ExpectBad(C, R"({"prompt": "x", "n": 2})", "n");
  ExpectBad(C, R"({"prompt": "x", "echo": true})", "echo");
  ExpectBad(C, R"({"prompt": "x", "ignore_eos": 1})", "ignore_eos");
  ExpectBad(C, R"({"prompt": "x", "model": 7})", "model");
}

TEST(OpenAiParse, Chat) {
  const ApiRequest r = ParseChatRequest(R"({"model": "m", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null, "name": "bot"}], "max_tokens": 9})");
  EXPECT_EQ(r.endpoint, Endpoint::kChat);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(*r.max_tokens, 9);

  const ApiRequest d = ParseChatRequest(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(ResolveMaxTokens(d, 10, 512), 128);
  EXPECT_EQ(ResolveMaxTokens(d, 500, 512), 12);

  const auto H = Endpoint::kChat;
  ExpectBad(H, R"({"model": "m"})", "messages");
  ExpectBad(H, R"({"messages": "hi"})", "messages");
  ExpectBad(H, R"({"messages": []})", "messages");
  ExpectBad(H, R"({"messages": ["hi"]})", "messages[0]");
  ExpectBad(H, R"({"messages": [{"content": "x"}]})", "messages[0].role");
  ExpectBad(H, R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role");
  ExpectBad(H, R"({"messages": [{"role": "user"}]})", "messages[0].content");
  ExpectBad(H, R"({"messages": [{"role": "user", "content": 3}]})", "messages[0].content");
  ExpectBad(H, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
            "messages[0].content[0].type");
  ExpectBad(H, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": "x"})",
            "max_tokens");
}

TEST(OpenAiParse, ContextExceeded) {
  const ApiRequest r = ParseCompletionRequest(R"({"prompt": "x", "max_tokens": 4})");
  try {
    ResolveMaxTokens(r, 512, 512);
    FAIL() << "accepted a prompt that fills the context";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_EQ(e.param, "prompt");
  }
}

TEST(OpenAiFormat, ErrorShape) {
  const json j = json::parse(FormatError(ApiError(400, "'n' must be 1", "n")));
  EXPECT_EQ(j["error"]["message"], "'n' must be 1");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
  const json k = json::parse(FormatError(ApiError(503, "full", "", "server_error", "queue_full")));
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_EQ(k["error"]["code"], "queue_full");
  EXPECT_EQ(k["error"]["type"], "server_error");
}

TEST(OpenAiFormat, Responses) {
  ResponseMeta m{Endpoint::kCompletions, MakeResponseId(Endpoint::kCompletions, 0xabc), 1700000000,
                 "stories"};
  EXPECT_EQ(m.id, "cmpl-0000000000000abc");
  json j = json::parse(FormatResponse(m, "hello", FinishReason::kLength, {3, 2}));
  EXPECT_EQ(j["id"], m.id);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "stories");
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["text"], "hello");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
  EXPECT_EQ(j["usage"]["total_tokens"], 5);

  m.endpoint = Endpoint::kChat;
  m.id = MakeResponseId(Endpoint::kChat, 1);
  EXPECT_EQ(m.id.rfind("chatcmpl-", 0), 0u);
  j = json::parse(FormatResponse(m, "hi", FinishReason::kStop, {4, 1}));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");

  // Invalid UTF-8 from a byte token becomes U+FFFD instead of throwing.
  j = json::parse(FormatResponse(m, "a\xE2\x82", FinishReason::kStop, {1, 1}));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "a\xEF\xBF\xBD");
}

// `data: {json}\n\n` -> the JSON.
json SseJson(const std::string& event) {
  EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
  EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
  return json::parse(event.substr(6, event.size() - 8));
}

TEST(OpenAiFormat, StreamChunks) {
  const ResponseMeta c{Endpoint::kCompletions, "cmpl-1", 5, "m"};
  json j = SseJson(SseTextChunk(c, "tok"));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "tok");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  j = SseJson(SseFinalChunk(c, FinishReason::kLength));
  EXPECT_EQ(j["choices"][0]["text"], "");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");

  const ResponseMeta h{Endpoint::kChat, "chatcmpl-1", 5, "m"};
  j = SseJson(SseRoleChunk(h));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  j = SseJson(SseTextChunk(h, "x"));
  EXPECT_EQ(j["choices"][0]["delta"]["content"], "x");
  EXPECT_FALSE(j["choices"][0]["delta"].contains("role"));
  j = SseJson(SseFinalChunk(h, FinishReason::kStop));
  EXPECT_TRUE(j["choices"][0]["delta"].empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  j = SseJson(SseUsageChunk(h, {2, 3}));
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  j = SseJson(SseError(ApiError(500, "boom", "", "server_error")));
  EXPECT_EQ(j["error"]["message"], "boom");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
}

TEST(OpenAiFormat, ModelsAndMetrics) {
  const json j = json::parse(FormatModels("stories260K", 7));
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], "stories260K");
  EXPECT_EQ(j["data"][0]["object"], "model");

  EngineStats s;
  s.running = 3;
  s.queued = 2;
  s.pages_total = 10;
  s.pages_used = 4;
  s.page_bytes = 4096;
  s.kv_bytes_used = 16384;
  s.kv_budget_bytes = 40960;
  s.prompt_tokens_total = 100;
  s.generated_tokens_total = 50;
  s.requests_finished = 6;
  s.preemptions = 1;
  s.decode_tok_s = 12.5;
  const std::string text = FormatMetrics(s);
  for (const char* line :
       {"cqkv_sequences_running 3\n", "cqkv_sequences_queued 2\n", "cqkv_kv_pages_total 10\n",
        "cqkv_kv_pages_used 4\n", "cqkv_kv_pages_free 6\n", "cqkv_kv_page_bytes 4096\n",
        "cqkv_kv_used_bytes 16384\n", "cqkv_kv_budget_bytes 40960\n",
        "cqkv_prompt_tokens_total 100\n", "cqkv_generation_tokens_total 50\n",
        "cqkv_decode_tokens_per_second 12.5\n", "cqkv_preemptions_total 1\n",
        "cqkv_requests_finished_total 6\n", "# TYPE cqkv_sequences_running gauge\n",
        "# TYPE cqkv_prompt_tokens_total counter\n", "# HELP cqkv_kv_pages_used "}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  // Every sample has its HELP and TYPE lines right before it.
  size_t samples = 0, pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    if (line[0] != '#') {
      ++samples;
      const std::string name = line.substr(0, line.find(' '));
      EXPECT_NE(text.find("# TYPE " + name + " "), std::string::npos) << name;
      EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
    }
    pos = end + 1;
  }
  EXPECT_EQ(samples, 13u);
}

}  // namespace
}  // namespace cqkv::serve
