// cqkv: command-line entry point. Each subcommand lives in its own tools/cmd_*.cc file.
#include <cstdio>

#include "tools/common.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"cqkv: LLaMA-family inference with compressed (coupled-quantized) KV caches"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cqkv 0.1");
  cqkv::tools::RegisterInfo(app);
  cqkv::tools::RegisterTokenize(app);
  cqkv::tools::RegisterLogits(app);
  cqkv::tools::RegisterPerplexity(app);
  cqkv::tools::RegisterGenerate(app);
  cqkv::tools::RegisterConvert(app);
  cqkv::tools::RegisterCalibrate(app);
  cqkv::tools::RegisterKvGrads(app);
  cqkv::tools::RegisterBenchAttn(app);
  cqkv::tools::RegisterBenchServe(app);
  cqkv::tools::RegisterServe(app);
  cqkv::tools::RegisterDumpTensor(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "cqkv: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const cqkv::Error& e) {
    std::fprintf(stderr, "cqkv: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cqkv: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
