#include "model/model.h"

#include "util/error.h"

namespace cqkv {

const Tokenizer& Model::tok() const {
  CQKV_CHECK(
      tokenizer != nullptr,
      "{}: no tokenizer found (pass --tokenizer with a tokenizer.bin, tokenizer.json or GGUF)",
      path);
  return *tokenizer;
}

}  // namespace cqkv
