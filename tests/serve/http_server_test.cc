// HttpServer end to end over real sockets, against FakeEngine (no model): routes, JSON and SSE
// responses, every error status, API keys, cancellation of a stream whose client went away, and
// graceful shutdown.
#include "serve/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "fake_engine.h"

namespace cqkv::serve {
namespace {

using json = nlohmann::json;
using testing::FakeEngine;

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions o = {}) {
    o.port = 0;
    o.shutdown_drain = std::chrono::milliseconds(300);
    engine_.Start();
    server_ = std::make_unique<HttpServer>(engine_, o);
    port_ = server_->Bind();
    serve_ = std::thread([this] { server_->Serve(); });
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (serve_.joinable()) serve_.join();
  }
  httplib::Client Client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  httplib::Result Post(const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {}) {
    return Client().Post(path.c_str(), headers, body, "application/json");
  }
  // The SSE events of a streamed response, `data: ` stripped; comments skipped.
  static std::vector<std::string> Events(const std::string& body) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < body.size()) {
      const size_t end = body.find("\n\n", pos);
      if (end == std::string::npos) break;
      const std::string ev = body.substr(pos, end - pos);
      if (ev.rfind("data: ", 0) == 0) out.push_back(ev.substr(6));
      pos = end + 2;
    }
    return out;
  }
  static void ExpectError(const httplib::Result& r, int status, const std::string& param = "") {
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, status) << r->body;
    const json j = json::parse(r->body);
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    if (!param.empty()) {
      EXPECT_EQ(j["error"]["param"], param) << r->body;
    }
  }

  FakeEngine engine_;
  std::unique_ptr<HttpServer> server_;
  std::thread serve_;
  int port_ = 0;
};

TEST_F(HttpServerTest, HealthModelsMetrics) {
  StartServer();
  auto r = Client().Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "ok");
  r = Client().Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["data"][0]["id"], "fake-model");
  r = Client().Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("cqkv_kv_pages_used 0\n"), std::string::npos) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  ExpectError(Client().Get("/v2/nothing"), 404);
}

TEST_F(HttpServerTest, BusyPortIsAnError) {
  StartServer();
  FakeEngine other_engine;
  HttpServerOptions o;
  o.port = port_;
  HttpServer other(other_engine, o);
  EXPECT_THROW(other.Bind(), Error);
}

// A burst of clients must wait in the accept queue, not be refused or reset: with nobody
// accepting yet, 32 connects all complete. (cpp-httplib's compiled backlog of 5 let only 6 in;
// the rest were dropped and, under load, reset.)
TEST(HttpServerBacklog, BurstOfConnectsFitsTheAcceptQueue) {
  FakeEngine engine;
  HttpServerOptions o;
  o.port = 0;
  HttpServer server(engine, o);
  const int port = server.Bind();  // listening, but no accept loop: Serve() is never called
  constexpr int kClients = 32;
  std::vector<int> fds;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < kClients; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  // A connect the kernel dropped would be retried only after 1 s: 500 ms tells them apart.
  int connected = 0;
  for (const int fd : fds) {
    pollfd p{fd, POLLOUT, 0};
    int err = -1;
    socklen_t len = sizeof(err);
    if (poll(&p, 1, 500) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
      ++connected;
  }
  for (const int fd : fds) close(fd);
  EXPECT_EQ(connected, kClients);
}

TEST_F(HttpServerTest, CompletionAndChat) {
  StartServer();
  auto r = Post("/v1/completions", R"({"prompt": "a b c", "max_tokens": 3, "temperature": 0,
                                       "seed": 5, "stop": ["zz"]})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "fake-model");
  EXPECT_EQ(j["choices"][0]["text"], "w0 w1 w2 ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 4);  // BOS + 3 words
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  const Request sent = engine_.last_request();
  EXPECT_EQ(sent.sampling.seed, 5u);
  EXPECT_EQ(sent.sampling.temperature, 0.0f);
  EXPECT_EQ(sent.sampling.stop, std::vector<std::string>{"zz"});

  r = Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(engine_.last_request().prompt, "user: hi\nassistant:");
  // Chat's default max_tokens is min(128, context - prompt) = 64 - 4.
  EXPECT_EQ(j["usage"]["completion_tokens"], FakeEngine::kContext - 4);
}

TEST_F(HttpServerTest, Streaming) {
  StartServer();
  auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 4, "stream": true,
                                       "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  auto ev = Events(r->body);
  ASSERT_GE(ev.size(), 3u) << r->body;
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 3 < ev.size(); ++i) {
    const json j = json::parse(ev[i]);
    EXPECT_EQ(j["object"], "text_completion");
    text += j["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, "w0 w1 w2 w3 ");
  const json fin = json::parse(ev[ev.size() - 3]);
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(json::parse(ev[ev.size() - 2])["usage"]["completion_tokens"], 4);

  r = Post("/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true})");
  ASSERT_TRUE(r);
  ev = Events(r->body);
  ASSERT_GE(ev.size(), 3u) << r->body;
  EXPECT_EQ(json::parse(ev[0])["choices"][0]["delta"]["role"], "assistant");
  text.clear();
  for (size_t i = 1; i + 1 < ev.size(); ++i) {
    const json j = json::parse(ev[i]);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    if (j["choices"][0]["delta"].contains("content"))
      text += j["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, "w0 w1 ");
  EXPECT_EQ(json::parse(ev[ev.size() - 2])["choices"][0]["finish_reason"], "length");
}

TEST_F(HttpServerTest, ClientErrors) {
  HttpServerOptions o;
  o.body_limit = 4096;
  StartServer(o);
  ExpectError(Post("/v1/completions", "{not json"), 400);
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": "x"})"), 400, "max_tokens");
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": 0})"), 400, "max_tokens");
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "n": 2})"), 400, "n");
  ExpectError(Post("/v1/chat/completions", R"({"messages": [{"role": "x", "content": "a"}]})"), 400,
              "messages[0].role");
  ExpectError(Post("/v1/completions", R"({"prompt": [1, 5000]})"), 400, "prompt");
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "w ";
  auto r = Post("/v1/completions", json{{"prompt", long_prompt}}.dump());
  ExpectError(r, 400, "prompt");
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "context_length_exceeded");
  ExpectError(Post("/v1/completions", json{{"prompt", std::string(8000, 'x')}}.dump()), 413);
  // The server is still healthy after all of that.
  auto ok = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, ApiKey) {
  HttpServerOptions o;
  o.api_key = "sekret";
  StartServer(o);
  const std::string body = R"({"prompt": "a", "max_tokens": 1})";
  ExpectError(Post("/v1/completions", body), 401);
  ExpectError(Post("/v1/completions", body, {{"Authorization", "Bearer sekreT"}}), 401);
  ExpectError(Client().Get("/v1/models"), 401);
  auto r = Post("/v1/completions", body, {{"Authorization", "Bearer sekret"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  auto h = Client().Get("/health");  // health and metrics stay open
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(HttpServerTest, QueueFullIs503) {
  engine_.max_queue = 0;
  StartServer();
  auto r = Post("/v1/completions", R"({"prompt": "a"})");
  ExpectError(r, 503);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "queue_full");
}

TEST_F(HttpServerTest, DisconnectCancels) {
  StartServer();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt": "a", "max_tokens": 100000, "ignore_eos": true, "stream": true})";
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  Client().send(req);  // returns once the receiver gave up and the client closed the socket
  EXPECT_EQ(chunks, 3);
  for (int i = 0; i < 500 && engine_.Stats().running > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine_.Stats().running, 0);
  EXPECT_EQ(engine_.cancelled().size(), 1u);
}

TEST_F(HttpServerTest, StopAnswersInFlightAndRefusesNew) {
  StartServer();
  // A request too long to finish within the drain: answered with 503 when cancelled at Stop.
  std::thread slow([this] {
    auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1000000})");
    ExpectError(r, 503);
  });
  for (int i = 0; i < 500 && engine_.Stats().running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server_->Stop();
  slow.join();
  serve_.join();                                                // Serve() returned
  EXPECT_FALSE(Post("/v1/completions", R"({"prompt": "a"})"));  // nobody listens any more
}

}  // namespace
}  // namespace cqkv::serve
