// `cqkv logits`: runs the forward pass over given token ids and writes all logits as raw
// little-endian float32 (n_tokens x vocab). The hook the NumPy reference checks compare against.
#include <fmt/core.h>

#include <string>
#include <vector>

#include "model/llama.h"
#include "tools/common.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterLogits(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string tokens, out, kv = "fp32";
    int chunk = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("logits", "write the logits of a token sequence as raw float32");
  AddModelOptions(cmd, o->m);
  cmd->add_option("--tokens", o->tokens, "comma-separated token ids")->required();
  cmd->add_option("-o,--out", o->out, "output file (n_tokens x vocab float32)")
      ->required()
      ->check(kNonEmptyPath);
  cmd->add_option("--kv", o->kv, "KV cache format");
  cmd->add_option("--chunk", o->chunk,
                  "tokens per forward call (0 = all at once; 1 = token-by-token decode)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->callback([o] {
    const std::vector<int32_t> ids = ParseTokenIds(o->tokens, "--tokens");
    auto model = LoadModelFrom(o->m);
    CheckTokenIds(ids, *model, "--tokens");
    const int64_t n = static_cast<int64_t>(ids.size()), V = model->config.vocab_size;
    CQKV_CHECK(n <= model->config.max_seq_len, "--tokens: {} tokens exceed the model context {}", n,
               model->config.max_seq_len);
    ThreadPool pool(o->m.threads);
    LlamaForward fwd(*model, pool);
    auto cache = MakeCacheFor(*model, o->kv, static_cast<int>(n));
    std::vector<float> logits(static_cast<size_t>(n * V));
    const int64_t chunk = o->chunk == 0 ? n : o->chunk;
    for (int64_t p = 0; p < n; p += chunk) {
      const int64_t len = std::min(chunk, n - p);
      fwd.Forward(std::span<const int32_t>(ids.data() + p, static_cast<size_t>(len)), *cache,
                  Mat(logits.data() + p * V, len, V));
    }
    WriteFileAtomic(o->out, std::string(reinterpret_cast<const char*>(logits.data()),
                                        logits.size() * sizeof(float)));
    fmt::print(stderr, "wrote {} x {} logits to {}\n", n, V, o->out);
  });
}

}  // namespace cqkv::tools
