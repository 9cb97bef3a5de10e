// `cqkv tokenize`: prints the token ids of a text as one JSON array (BOS first unless --no-bos).
// Works on a model (-m) or on a tokenizer file alone (--tokenizer: a vocabulary-only GGUF, a
// Hugging Face tokenizer.json or a llama2.c tokenizer.bin).
#include <nlohmann/json.hpp>

#include <iostream>

#include "loader/loader.h"
#include "tokenizer/tokenizer.h"
#include "tools/common.h"
#include "util/error.h"
#include "util/input_file.h"

namespace cqkv::tools {

void RegisterTokenize(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string text, text_file;
    bool no_bos = false, pieces = false, parse_special = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print token ids of a text as a JSON array");
  cmd->add_option("-m,--model", o->m.model, "model file: GGUF or llama2.c checkpoint")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", o->m.tokenizer,
                  "tokenizer file (llama2.c tokenizer.bin, tokenizer.json or GGUF, a "
                  "vocabulary-only one too); enough on its own, without -m")
      ->check(CLI::ExistingFile);
  cmd->add_option("-t,--threads", o->m.threads, "worker threads (unused; accepted for symmetry)")
      ->check(CLI::NonNegativeNumber);
  auto* text = cmd->add_option("--text", o->text, "text to tokenize");
  cmd->add_option("--text-file", o->text_file,
                  "file whose whole content is tokenized ('-': standard input)")
      ->excludes(text);
  cmd->add_flag("--no-bos", o->no_bos, "do not prepend BOS");
  cmd->add_flag("--parse-special", o->parse_special,
                "text spelling a special token (<|im_start|>, <s>, ...) becomes that token");
  cmd->add_flag("--pieces", o->pieces, "print [id, piece] pairs instead of ids");
  cmd->callback([o] {
    CQKV_CHECK(!o->text.empty() || !o->text_file.empty(), "tokenize: give --text or --text-file");
    CQKV_CHECK(!o->m.model.empty() || !o->m.tokenizer.empty(),
               "tokenize: give -m MODEL or --tokenizer FILE");
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> own;
    if (o->m.model.empty()) {
      own = MakeTokenizer(LoadVocabFile(o->m.tokenizer));
    } else {
      model = LoadModelFrom(o->m);
    }
    const Tokenizer& tok = model != nullptr ? model->tok() : *own;
    const std::string text =
        o->text_file.empty()
            ? o->text
            : ReadInputFile(o->text_file, kMaxTextInputBytes, "--text-file", /*allow_stdin=*/true);
    const auto ids = tok.Encode(text, EncodeOptions{!o->no_bos, o->parse_special});
    nlohmann::json j = nlohmann::json::array();
    for (int32_t id : ids) {
      if (o->pieces) {
        j.push_back({id, tok.Decode(id)});
      } else {
        j.push_back(id);
      }
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  });
}

}  // namespace cqkv::tools
