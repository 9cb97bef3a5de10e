// cqkv: command-line entry point. Each subcommand lives in its own tools/cmd_*.cc file. Every
// failure ends here as exactly one "cqkv: error: ..." line: messages are escaped once more, so
// text from a file or flag can neither cut the line short (NUL) nor forge a second one.
#include <cstdio>
#include <new>
#include <string>
#include <vector>

#include "tools/common.h"
#include "util/error.h"
#include "util/escape.h"

namespace {

constexpr size_t kMaxMessageBytes = 4096;

void PrintError(const char* kind, const std::string& what, const char* suffix = "") {
  std::fprintf(stderr, "cqkv: %s: %s%s\n", kind, cqkv::EscapedLine(what, kMaxMessageBytes).c_str(),
               suffix);
}

}  // namespace

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
  cqkv::tools::RegisterEvalTasks(app);
  try {
    std::vector<std::string> args = cqkv::tools::AttachNegativeNumbers(argc, argv);
    std::vector<const char*> cargs;
    for (const auto& a : args) cargs.push_back(a.c_str());
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    PrintError("error", e.what(), " (see --help)");
    return 2;
  } catch (const cqkv::Error& e) {
    PrintError("error", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    PrintError("error",
               "out of memory: the inputs or flags ask for more memory than this machine has "
               "(a smaller --ctx, --batch or model may fit)");
    return 1;
  } catch (const std::exception& e) {
    PrintError("internal error", e.what());
    return 2;
  }
  return 0;
}
