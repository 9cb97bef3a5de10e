// `cqkv tokenize`: prints the token ids of a text as one JSON array (BOS first unless --no-bos).
#include <nlohmann/json.hpp>

#include <iostream>

#include "tools/common.h"
#include "util/error.h"
#include "util/input_file.h"

namespace cqkv::tools {

void RegisterTokenize(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string text, text_file;
    bool no_bos = false, pieces = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print token ids of a text as a JSON array");
  AddModelOptions(cmd, o->m);
  auto* text = cmd->add_option("--text", o->text, "text to tokenize");
  cmd->add_option("--text-file", o->text_file,
                  "file whose whole content is tokenized ('-': standard input)")
      ->excludes(text);
  cmd->add_flag("--no-bos", o->no_bos, "do not prepend BOS");
  cmd->add_flag("--pieces", o->pieces, "print [id, piece] pairs instead of ids");
  cmd->callback([o] {
    CQKV_CHECK(!o->text.empty() || !o->text_file.empty(), "tokenize: give --text or --text-file");
    auto model = LoadModelFrom(o->m);
    const std::string text =
        o->text_file.empty()
            ? o->text
            : ReadInputFile(o->text_file, kMaxTextInputBytes, "--text-file", /*allow_stdin=*/true);
    const auto ids = model->tok().Encode(text, !o->no_bos);
    nlohmann::json j = nlohmann::json::array();
    for (int32_t id : ids) {
      if (o->pieces) {
        j.push_back({id, model->tok().Decode(id)});
      } else {
        j.push_back(id);
      }
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  });
}

}  // namespace cqkv::tools
