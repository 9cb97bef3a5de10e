// `cqkv convert`: a llama2.c checkpoint or Hugging Face folder (+ tokenizer) -> GGUF `llama`
// (llama.cpp-compatible metadata and Q/K layout).
#include <fmt/core.h>

#include <map>

#include "loader/convert.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterConvert(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string input, out, type = "f32";
    ConvertOptions c;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("convert", "write a model (llama2.c checkpoint, HF folder) as GGUF");
  AddModelOptions(cmd, o->m);
  // `cqkv convert DIR -o out.gguf` reads like a converter; -m/--model still works.
  CLI::Option* model = cmd->get_option("--model");
  model->required(false);
  cmd->add_option("input", o->input, "model to convert (instead of -m): file or HF folder")
      ->check(CLI::ExistingPath)
      ->excludes(model);
  cmd->add_option("-o,--out", o->out, "output .gguf file")->required()->check(kNonEmptyPath);
  cmd->add_option("--name", o->c.name, "general.name")->capture_default_str();
  cmd->add_option("--type", o->type, "type of 2-D weights: f32, f16, bf16, q8_0, q4_0")
      ->capture_default_str();
  cmd->callback([o] {
    static const std::map<std::string, DType> kTypes = {{"f32", DType::kF32},
                                                        {"f16", DType::kF16},
                                                        {"bf16", DType::kBF16},
                                                        {"q8_0", DType::kQ8_0},
                                                        {"q4_0", DType::kQ4_0}};
    const auto it = kTypes.find(o->type);
    CQKV_CHECK(it != kTypes.end(), "--type {}: unknown (f32, f16, bf16, q8_0, q4_0)", o->type);
    o->c.matrix_type = it->second;
    if (!o->input.empty()) o->m.model = o->input;
    CQKV_CHECK(!o->m.model.empty(), "convert: give the model as an argument or with -m/--model");
    auto model = LoadModelFrom(o->m);
    WriteModelAsGguf(*model, model->tok().vocab(), o->out, o->c);
    fmt::print(stderr, "wrote {}\n", o->out);
  });
}

}  // namespace cqkv::tools
