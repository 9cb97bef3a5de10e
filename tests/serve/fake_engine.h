// A stand-in cqkv::Engine for the HTTP server tests: one word per token, a background thread
// that emits "w0 ", "w1 ", ... for every running request every millisecond, Cancel and Stop
// with the documented final events, and a queue limit. No model involved.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cqkv/engine.h"

namespace cqkv::serve::testing {

class FakeEngine : public Engine {
 public:
  static constexpr int kContext = 64;
  int max_queue = 100;      // more requests at once: kResourceExhausted
  int tokens_per_step = 1;  // per request per step

  ~FakeEngine() override { Stop(); }

  int64_t Submit(Request r) override {
    std::lock_guard lock(mu_);
    if (stopped_) throw Error("engine stopped", ErrorCode::kUnavailable);
    if (static_cast<int>(live_.size()) >= max_queue)
      throw Error("queue full", ErrorCode::kResourceExhausted);
    if (r.prompt_tokens.empty()) r.prompt_tokens = Tokenize(r.prompt, true);
    if (static_cast<int>(r.prompt_tokens.size()) >= kContext)
      throw Error("prompt too long", ErrorCode::kInvalidArgument);
    last_request_ = r;
    live_[++next_id_] = Live{std::move(r), 0};
    return next_id_;
  }
  void Cancel(int64_t id) override {
    std::lock_guard lock(mu_);
    cancelled_.insert(id);
    Finish(id, FinishReason::kCancelled);
  }
  bool Step() override {
    std::lock_guard lock(mu_);
    if (live_.empty()) return false;
    std::vector<int64_t> ended;
    for (auto& [id, l] : live_) {
      for (int k = 0; k < tokens_per_step; ++k) {
        TokenEvent ev;
        ev.request_id = id;
        ev.token = 100 + l.generated;
        ev.text.append("w").append(std::to_string(l.generated)).append(" ");
        ev.prompt_tokens = static_cast<int>(l.r.prompt_tokens.size());
        ev.completion_tokens = ++l.generated;
        l.r.on_token(ev);
        if (l.generated >= l.r.sampling.max_tokens) {
          ended.push_back(id);
          break;
        }
      }
    }
    for (int64_t id : ended) Finish(id, FinishReason::kLength);
    return true;
  }
  void RunUntilIdle() override {
    while (Step()) {
    }
  }
  void Start() override {
    thread_ = std::thread([this] {
      while (!quit_) {
        Step();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  void Stop(std::chrono::milliseconds drain = std::chrono::milliseconds(0)) override {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    const auto deadline = std::chrono::steady_clock::now() + drain;
    while (std::chrono::steady_clock::now() < deadline && Stats().running > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    {
      std::lock_guard lock(mu_);
      while (!live_.empty()) Finish(live_.begin()->first, FinishReason::kCancelled);
    }
    quit_ = true;
    if (thread_.joinable()) thread_.join();
  }
  EngineStats Stats() const override {
    std::lock_guard lock(mu_);
    EngineStats s;
    s.running = static_cast<int>(live_.size());
    s.pages_total = 100;
    s.pages_used = static_cast<int64_t>(live_.size());
    return s;
  }
  const ModelInfo& Info() const override { return info_; }
  std::vector<int32_t> Tokenize(const std::string& text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(1);
    std::istringstream in(text);
    for (std::string w; in >> w;) ids.push_back(static_cast<int32_t>(2 + w.size()));
    return ids;
  }
  std::string Detokenize(const std::vector<int32_t>& tokens) const override {
    return std::to_string(tokens.size());
  }
  std::string ApplyChatTemplate(const std::vector<ChatMessage>& messages) const override {
    std::string s;
    for (const ChatMessage& m : messages) s += m.role + ": " + m.content + "\n";
    return s + "assistant:";
  }
  std::vector<int32_t> TokenizeChat(const std::vector<ChatMessage>& messages) const override {
    return Tokenize(ApplyChatTemplate(messages), /*add_bos=*/true);
  }

  std::set<int64_t> cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  Request last_request() const {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  struct Live {
    Request r;
    int generated = 0;
  };
  void Finish(int64_t id, FinishReason why) {  // mu_ held
    auto it = live_.find(id);
    if (it == live_.end()) return;
    TokenEvent ev;
    ev.request_id = id;
    ev.done = true;
    ev.finish = why;
    ev.prompt_tokens = static_cast<int>(it->second.r.prompt_tokens.size());
    ev.completion_tokens = it->second.generated;
    it->second.r.on_token(ev);
    live_.erase(it);
  }

  mutable std::mutex mu_;
  std::map<int64_t, Live> live_;
  std::set<int64_t> cancelled_;
  Request last_request_;
  int64_t next_id_ = 0;
  bool stopped_ = false;
  std::atomic<bool> quit_{false};
  std::thread thread_;
  ModelInfo info_{"fake-model", "llama", 0, 1000, kContext, "fp16", 16};
};

}  // namespace cqkv::serve::testing
