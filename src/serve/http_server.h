// An OpenAI-compatible HTTP front end for a running cqkv::Engine, on cpp-httplib:
//   POST /v1/completions, POST /v1/chat/completions (JSON or server-sent events with "stream"),
//   GET /v1/models, GET /health, GET /metrics (Prometheus text).
// Each HTTP request is served on one of httplib's worker threads: it submits an engine request
// whose token callback fills a per-request buffer; a non-streaming handler waits for the final
// event, a streaming one drains the buffer into chunked SSE output and cancels the engine request
// when the client goes away, so its KV pages return to the pool. Errors are OpenAI-shaped JSON;
// no request can bring the server down. Uses only the public API (include/cqkv/).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "cqkv/engine.h"

namespace cqkv::serve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (Bind returns it)
  std::string api_key;  // non-empty: /v1/* require "Authorization: Bearer <api_key>" (else 401)
  size_t body_limit = size_t{1} << 20;  // larger request bodies get 413
  int threads = 64;  // httplib workers: connections served at once (each request holds one)
  std::chrono::milliseconds shutdown_drain{30000};  // Stop(): time given to running requests
  std::string model_id;  // the model's name in responses; "" = engine.Info().name
};

class HttpServer {
 public:
  // `engine` must outlive the server and be Start()ed (or be stepped by someone) before Serve.
  HttpServer(Engine& engine, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on host:port; returns the port. Throws cqkv::Error when it cannot.
  int Bind();
  // Accepts and serves connections on the calling thread until Stop().
  void Serve();
  // Graceful shutdown, from any thread but a handler's: new /v1 requests get 503, then
  // engine.Stop(shutdown_drain) lets running requests finish (the rest are cancelled and answered),
  // then the listener closes and Serve() returns once every handler has. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cqkv::serve
