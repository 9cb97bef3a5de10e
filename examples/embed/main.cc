// Embedding example: two requests decoded as one batch, tokens streamed through callbacks.
//   embed MODEL [KV_SPEC]
#include <cqkv/engine.h>

#include <cstdio>
#include <map>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [KV_SPEC]\n", argv[0]);
    return 2;
  }
  try {
    cqkv::EngineConfig config;
    config.model_path = argv[1];
    config.kv = argc > 2 ? argv[2] : "fp16";
    config.kv_memory_bytes = int64_t{256} << 20;
    auto engine = cqkv::Engine::Create(config);

    std::map<int64_t, std::string> text;
    for (const char* prompt : {"Once upon a time", "The little dog"}) {
      cqkv::Request r;
      r.prompt = prompt;
      r.sampling.temperature = 0.0f;  // greedy
      r.sampling.max_tokens = 16;
      r.on_token = [&text](const cqkv::TokenEvent& e) { text[e.request_id] += e.text; };
      text[engine->Submit(std::move(r))] = prompt;
    }
    engine->RunUntilIdle();  // steps on this thread; Start() would use a background thread
    for (const auto& [id, t] : text) std::printf("[%lld] %s\n", static_cast<long long>(id), t.c_str());
    const cqkv::EngineStats s = engine->Stats();
    std::printf("generated %lld tokens, KV pages in use after: %lld\n",
                static_cast<long long>(s.generated_tokens_total),
                static_cast<long long>(s.pages_used));
  } catch (const cqkv::Error& e) {
    std::fprintf(stderr, "embed: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
