// Text <-> token ids. One interface for SentencePiece-style BPE (LLaMA-2) and byte-level BPE
// (GPT-2, Llama-3, Qwen2, SmolLM, ...); MakeTokenizer picks the implementation from Vocab::model.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"

namespace cqkv {

struct EncodeOptions {
  bool add_bos = true;  // BOS first (when the vocabulary has one)
  // Text spelling a control token (<|begin_of_text|>, <|im_start|>, <s>) becomes that token, as
  // llama.cpp's tokenize(parse_special=true). Off, such text is tokenized as plain text; control
  // tokens are then never produced from text. User-defined tokens are split out either way.
  bool parse_special = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const;
  // Plain text, no special-token parsing; BOS first when add_bos.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const {
    return Encode(text, EncodeOptions{add_bos, false});
  }
  // The text piece of one token as it appears in output (byte tokens give raw bytes). Throws
  // cqkv::Error for an id outside the vocabulary.
  std::string Decode(int32_t token) const;
  virtual const Vocab& vocab() const = 0;
  int32_t bos() const { return vocab().bos_id; }
  int32_t eos() const { return vocab().eos_id; }
  int32_t size() const { return static_cast<int32_t>(vocab().tokens.size()); }

 protected:
  // Appends the tokens of `text`, which holds no special token. `after_special`: the text opens
  // the input or follows a special token (SentencePiece prefixes its space only there).
  virtual void EncodeText(std::string_view text, bool after_special,
                          std::vector<int32_t>& out) const = 0;

  // Decode's answer per token id, filled by each implementation's constructor (how a vocabulary
  // spells its pieces is the implementation's business; looking one up is not).
  std::vector<std::string> pieces_;
  // Built by each implementation's constructor from its final vocabulary.
  tokenizer_internal::SpecialTokenSplitter special_;
};

// Throws cqkv::Error for an unsupported vocabulary model or pre-tokenizer.
std::unique_ptr<Tokenizer> MakeTokenizer(Vocab vocab);

}  // namespace cqkv
