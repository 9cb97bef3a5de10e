// `cqkv serve`: an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, SSE
// streaming, /v1/models, /health, /metrics) over one cqkv::Engine. SIGINT/SIGTERM shut it down
// gracefully: new requests are refused, running ones get --shutdown-timeout to finish.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "cqkv/engine.h"
#include "serve/http_server.h"
#include "tools/common.h"
#include "util/byte_size.h"
#include "util/error.h"

namespace cqkv::tools {
namespace {

int g_signal_pipe_write = -1;

void OnStopSignal(int sig) {
  const int saved_errno = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe_write, &b, 1);
  errno = saved_errno;
}

// SIGINT/SIGTERM -> a byte in a pipe, for Wait() on an ordinary thread. One per process.
class StopSignalPipe {
 public:
  StopSignalPipe() {
    CQKV_CHECK(pipe(fds_) == 0, "serve: cannot create the signal pipe: {}", strerror(errno));
    g_signal_pipe_write = fds_[1];
    struct sigaction sa = {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  }
  ~StopSignalPipe() {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    Close();
    close(fds_[0]);
  }
  // The signal number, or 0 once Close() was called.
  int Wait() {
    unsigned char b = 0;
    for (;;) {
      const ssize_t n = read(fds_[0], &b, 1);
      if (n == 1) return b;
      if (n == 0 || errno != EINTR) return 0;
    }
  }
  void Close() {
    std::lock_guard lock(mu_);
    if (fds_[1] < 0) return;
    signal(SIGINT, SIG_IGN);  // no handler may write to the fd being closed
    signal(SIGTERM, SIG_IGN);
    g_signal_pipe_write = -1;
    close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
  std::mutex mu_;
};

}  // namespace

void RegisterServe(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    EngineConfig engine;
    serve::HttpServerOptions http;
    std::string kv_memory = "1GiB", body_limit = "1MiB";
    double shutdown_timeout_s = 30;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("serve", "serve the model over an OpenAI-compatible HTTP API");
  AddModelOptions(cmd, o->m);
  EngineConfig& e = o->engine;
  serve::HttpServerOptions& h = o->http;
  cmd->add_option("--kv", e.kv, "KV cache format (fp16, cq:FILE.cqcb, int4-channel, ...)")
      ->capture_default_str();
  cmd->add_option("--kv-memory", o->kv_memory,
                  "KV memory for all sequences together: bytes or 512MiB, 8GiB, 1.5GB")
      ->capture_default_str();
  cmd->add_option("--page-tokens", e.page_tokens, "tokens per KV page (a multiple of 256)")
      ->capture_default_str()
      ->check(kPageTokens);
  cmd->add_option("--ctx", e.max_context,
                  "longest prompt + completion per sequence (0 = the model's context)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--max-queue", e.max_queue, "requests waiting for admission at most (more: 503)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--max-running", e.max_running, "sequences advanced together at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--max-batch-tokens", e.max_batch_tokens, "tokens per engine step at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--host", h.host, "address to listen on (127.0.0.1: this machine only)")
      ->capture_default_str();
  cmd->add_option("--port", h.port, "TCP port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", h.api_key, "require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--body-limit", o->body_limit, "largest request body (bytes or 64KiB, 1MiB...)")
      ->capture_default_str();
  cmd->add_option("--http-threads", h.threads,
                  "HTTP worker threads: requests served at once (each holds one while it runs)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout_s,
                  "seconds running requests get to finish on SIGINT/SIGTERM")
      ->capture_default_str()
      ->check(FiniteRange(0, 24 * 3600));

  cmd->callback([o] {
    EngineConfig cfg = o->engine;
    cfg.model_path = o->m.model;
    cfg.tokenizer_path = o->m.tokenizer;
    cfg.threads = o->m.threads;
    cfg.kv_memory_bytes = ParseByteSize(o->kv_memory, "--kv-memory");
    CQKV_CHECK(cfg.kv_memory_bytes > 0, "--kv-memory: must be more than 0 bytes");
    serve::HttpServerOptions http = o->http;
    const int64_t body_limit = ParseByteSize(o->body_limit, "--body-limit");
    CQKV_CHECK(body_limit > 0, "--body-limit: must be more than 0 bytes");
    http.body_limit = static_cast<size_t>(body_limit);
    http.shutdown_drain = std::chrono::milliseconds(std::llround(o->shutdown_timeout_s * 1000));

    // SIGINT/SIGTERM: the handler only writes the signal number into a pipe (async-signal-safe);
    // a thread reading the pipe runs the shutdown. (sigwait would need the signals blocked in
    // every thread, and OpenBLAS starts its threads before main.)
    StopSignalPipe stop_pipe;
    signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a dead server

    auto engine = Engine::Create(cfg);
    const ModelInfo& info = engine->Info();
    engine->Start();
    serve::HttpServer server(*engine, http);
    const int port = server.Bind();

    std::thread waiter([&] {
      const int sig = stop_pipe.Wait();
      if (sig == 0) return;  // closed by the main thread below
      fmt::print(stderr, "cqkv serve: {}, shutting down (up to {} s for running requests)\n",
                 strsignal(sig), o->shutdown_timeout_s);
      server.Stop();
    });
    fmt::print(stderr, "cqkv serve: model {} ({}, ctx {}), kv {} ({:.2f} bits/channel), {} KV\n",
               info.name, info.arch, info.context_length, info.kv_format, info.kv_bits_per_channel,
               o->kv_memory);
    fmt::print("cqkv serve: listening on http://{}:{}\n", http.host, port);
    std::fflush(stdout);
    server.Serve();
    stop_pipe.Close();  // wakes the waiter when Serve ended without a signal
    waiter.join();
    server.Stop();  // when Serve ended by itself
    fmt::print(stderr, "cqkv serve: stopped\n");
  });
}

}  // namespace cqkv::tools
