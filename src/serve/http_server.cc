#include "serve/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>

#include "serve/openai_api.h"
#include "util/utf8.h"

namespace cqkv::serve {
namespace {

using namespace std::chrono_literals;

const char* TypeFor(int status) { return status >= 500 ? "server_error" : "invalid_request_error"; }

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(FormatError(e), "application/json");
}

// cqkv::Error from the engine -> the HTTP status of the brief: the caller's fault 400, full 503.
ApiError FromEngineError(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
      return ApiError(400, e.what());
    case ErrorCode::kResourceExhausted:
      return ApiError(503, e.what(), "", "server_error", "queue_full");
    case ErrorCode::kUnavailable:
      return ApiError(503, e.what(), "", "server_error", "unavailable");
    case ErrorCode::kNotFound:
      return ApiError(404, e.what(), "", "invalid_request_error", "not_found");
    case ErrorCode::kInternal:
      break;
  }
  return ApiError(500, e.what(), "", "server_error");
}

// Where a request's token events land (written by the engine's callback, read by the handler).
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;  // completion text not yet taken by the reader
  bool done = false;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  Usage usage;

  void OnEvent(const TokenEvent& ev) {
    {
      std::lock_guard lock(mu);
      text += ev.text;
      usage = {ev.prompt_tokens, ev.completion_tokens};
      if (ev.done) {
        done = true;
        finish = ev.finish;
        error = ev.error;
      }
    }
    cv.notify_all();
  }
};

// A finished request that did not end in stop/length, as an error.
ApiError FailureOf(FinishReason finish, const std::string& error) {
  if (finish == FinishReason::kCancelled)
    return ApiError(503, "the request was cancelled: the server is shutting down", "",
                    "server_error", "cancelled");
  return ApiError(500, error.empty() ? "generation failed" : error, "", "server_error");
}

// The streaming side of one request: what has been sent so far.
struct StreamState {
  std::shared_ptr<Collector> c;
  ResponseMeta meta;
  bool include_usage = false;
  bool opened = false;
  bool finished = false;  // [DONE] written
  int idle_waits = 0;
  std::string pending;  // an incomplete UTF-8 character held for the next token
};

constexpr auto kStreamPoll = 500ms;
constexpr int kHeartbeatPolls = 10;  // an SSE comment after 5 s without tokens finds dead clients
constexpr int kListenBacklog = 512;  // the kernel caps it at net.core.somaxconn

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  HttpServerOptions opt;
  httplib::Server svr;
  std::atomic<bool> stopping{false};
  // The listening socket, seen in the socket-options callback: Bind() widens its backlog.
  std::atomic<int> listen_fd{-1};
  std::atomic<bool> serve_entered{false}, serve_returned{false};
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  Impl(Engine& e, HttpServerOptions o) : engine(e), opt(std::move(o)) {
    if (opt.model_id.empty()) opt.model_id = engine.Info().name;
    Routes();
  }

  uint64_t Random() {
    std::lock_guard lock(rng_mu);
    return rng();
  }

  void Routes();
  void HandleGenerate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  void Stream(httplib::Response& res, int64_t id, std::shared_ptr<StreamState> st);
};

void HttpServer::Impl::Routes() {
  const int threads = std::max(1, opt.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_payload_max_length(opt.body_limit);
  // httplib's default adds SO_REUSEPORT, which would let a second server share our port and take
  // half of its connections; a busy port must be an error instead.
  svr.set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (!opt.api_key.empty()) {
      const std::string want = "Bearer " + opt.api_key;
      const std::string got = req.get_header_value("Authorization");
      unsigned diff = got.size() != want.size();  // compared in constant time
      for (size_t i = 0; i < want.size(); ++i) diff |= i < got.size() ? got[i] ^ want[i] : 1;
      if (diff != 0) {
        SendError(res, ApiError(401, "missing or wrong API key (Authorization: Bearer <key>)", "",
                                "invalid_request_error", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (stopping) {
      SendError(res,
                ApiError(503, "the server is shutting down", "", "server_error", "unavailable"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Statuses httplib sets itself (no route 404, body too large 413, bad request 400) get a JSON
  // body in OpenAI's shape; responses we made already have one.
  svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg;
    switch (res.status) {
      case 404:
        msg = fmt::format("no endpoint {} {}", req.method, req.path);
        break;
      case 413:
        msg = fmt::format("the request body exceeds the limit of {} bytes", opt.body_limit);
        break;
      default:
        msg = fmt::format("HTTP error {}", res.status);
    }
    res.set_content(FormatError(ApiError(res.status, msg, "", TypeFor(res.status))),
                    "application/json");
  });

  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string msg = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          msg = e.what();
        } catch (...) {
        }
        SendError(res, ApiError(500, "internal error: " + msg, "", "server_error"));
      });

  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping) res.status = 503;
    res.set_content(stopping ? R"({"status":"shutting down"})" : R"({"status":"ok"})",
                    "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(FormatMetrics(engine.Stats()), "text/plain; version=0.0.4; charset=utf-8");
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(FormatModels(opt.model_id, std::time(nullptr)), "application/json");
  });
  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(req, res, Endpoint::kCompletions);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGenerate(req, res, Endpoint::kChat);
  });
}

void HttpServer::Impl::HandleGenerate(const httplib::Request& req, httplib::Response& res,
                                      Endpoint endpoint) {
  try {
    const ApiRequest api =
        endpoint == Endpoint::kChat ? ParseChatRequest(req.body) : ParseCompletionRequest(req.body);
    const ModelInfo& info = engine.Info();
    Request r;
    if (endpoint == Endpoint::kChat) {
      r.prompt = engine.ApplyChatTemplate(api.messages);
    } else {
      r.prompt = api.prompt;
    }
    if (!api.prompt_tokens.empty()) {
      r.prompt_tokens = api.prompt_tokens;
    } else if (endpoint == Endpoint::kChat) {
      r.prompt_tokens = engine.TokenizeChat(api.messages);
    } else {
      r.prompt_tokens = engine.Tokenize(r.prompt, /*add_bos=*/true);
    }
    for (int32_t t : r.prompt_tokens) {
      if (t >= info.vocab_size)
        throw ApiError(400,
                       fmt::format("token id {} in 'prompt' is outside the vocabulary of {}", t,
                                   info.vocab_size),
                       "prompt");
    }
    r.sampling = api.sampling;
    r.sampling.max_tokens =
        ResolveMaxTokens(api, static_cast<int>(r.prompt_tokens.size()), info.context_length);
    r.sampling.seed = api.seed ? *api.seed : Random();

    auto c = std::make_shared<Collector>();
    r.on_token = [c](const TokenEvent& ev) { c->OnEvent(ev); };
    const ResponseMeta meta{endpoint, MakeResponseId(endpoint, Random()),
                            static_cast<int64_t>(std::time(nullptr)), opt.model_id};
    const int64_t id = engine.Submit(std::move(r));

    if (api.stream) {
      auto st = std::make_shared<StreamState>();
      st->c = c;
      st->meta = meta;
      st->include_usage = api.include_usage;
      Stream(res, id, std::move(st));
      return;
    }
    std::unique_lock lock(c->mu);
    c->cv.wait(lock, [&] { return c->done; });
    if (c->finish != FinishReason::kStop && c->finish != FinishReason::kLength) {
      SendError(res, FailureOf(c->finish, c->error));
      return;
    }
    res.set_content(FormatResponse(meta, c->text, c->finish, c->usage), "application/json");
  } catch (const ApiError& e) {
    SendError(res, e);
  } catch (const Error& e) {
    SendError(res, FromEngineError(e));
  } catch (const std::exception& e) {
    SendError(res, ApiError(500, fmt::format("internal error: {}", e.what()), "", "server_error"));
  }
}

void HttpServer::Impl::Stream(httplib::Response& res, int64_t id, std::shared_ptr<StreamState> st) {
  res.set_header("Cache-Control", "no-cache");
  // Called by httplib again and again until sink.done(); false (or a failed write) drops the
  // connection, and the releaser below then cancels the engine request.
  auto provider = [st](size_t /*offset*/, httplib::DataSink& sink) -> bool {
    std::string out;
    if (!st->opened) {
      st->opened = true;
      if (st->meta.endpoint == Endpoint::kChat) out += SseRoleChunk(st->meta);
    }
    Collector& c = *st->c;
    std::unique_lock lock(c.mu);
    if (!c.cv.wait_for(lock, kStreamPoll, [&] { return !c.text.empty() || c.done; })) {
      lock.unlock();
      if (++st->idle_waits >= kHeartbeatPolls) {
        st->idle_waits = 0;
        out += ": keep-alive\n\n";  // an SSE comment: clients skip it, a dead socket fails it
      }
      if (out.empty()) return sink.is_writable();
      return sink.write(out.data(), out.size());
    }
    st->idle_waits = 0;
    std::string text = std::move(st->pending) + std::move(c.text);
    c.text.clear();
    const bool done = c.done;
    const FinishReason finish = c.finish;
    const std::string error = c.error;
    const Usage usage = c.usage;
    lock.unlock();

    const size_t keep = done ? text.size() : CompleteUtf8Prefix(text);
    st->pending = text.substr(keep);
    text.resize(keep);
    if (!text.empty()) out += SseTextChunk(st->meta, text);
    if (done) {
      if (finish == FinishReason::kStop || finish == FinishReason::kLength) {
        out += SseFinalChunk(st->meta, finish);
        if (st->include_usage) out += SseUsageChunk(st->meta, usage);
      } else {
        out += SseError(FailureOf(finish, error));
      }
      out += kSseDone;
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) return false;
    if (done) {
      st->finished = true;
      sink.done();
    }
    return true;
  };
  Engine* engine_ptr = &engine;
  auto releaser = [st, engine_ptr, id](bool /*success*/) {
    if (!st->finished) engine_ptr->Cancel(id);  // client gone or server stopping: free the pages
  };
  res.set_chunked_content_provider("text/event-stream", std::move(provider), std::move(releaser));
}

HttpServer::HttpServer(Engine& engine, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

int HttpServer::Bind() {
  const HttpServerOptions& o = impl_->opt;
  int port = o.port;
  if (port == 0) {
    port = impl_->svr.bind_to_any_port(o.host);
  } else if (!impl_->svr.bind_to_port(o.host, port)) {
    port = -1;
  }
  if (port <= 0)
    throw Error(
        fmt::format("--host {} --port {}: cannot listen there (address in use, not local, "
                    "or not permitted)",
                    o.host, o.port));
  // Debian's cpp-httplib is a compiled library whose listen() backlog is 5, whatever
  // CPPHTTPLIB_LISTEN_BACKLOG says here: a burst of clients (the load test opens 32 at once)
  // overflows the accept queue and some connections are reset instead of waiting their turn.
  // listen() again on the bound socket only changes its backlog (Linux, POSIX).
  if (const int fd = impl_->listen_fd; fd >= 0 && ::listen(fd, kListenBacklog) != 0)
    throw Error(fmt::format("--host {} --port {}: cannot set the listen backlog: {}", o.host, port,
                            std::strerror(errno)));
  return port;
}

void HttpServer::Serve() {
  impl_->serve_entered = true;
  if (!impl_->stopping) impl_->svr.listen_after_bind();
  impl_->serve_returned = true;
}

void HttpServer::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->engine.Stop(impl_->opt.shutdown_drain);
  // httplib's stop() is a no-op until its accept loop runs: when Serve() was entered, wait for
  // that (Serve() checks `stopping` after announcing itself, so one of the two always sees the
  // other).
  while (impl_->serve_entered && !impl_->serve_returned && !impl_->svr.is_running())
    std::this_thread::sleep_for(5ms);
  impl_->svr.stop();
}

}  // namespace cqkv::serve
