// Text <-> token ids. One interface for SentencePiece-style BPE (LLaMA-2) and GPT-2 byte-level BPE;
// MakeTokenizer picks the implementation from Vocab::model.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace cqkv {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`; BOS first when add_bos (and the vocabulary has one).
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos) const = 0;
  // The text piece of one token as it appears in output (byte tokens give raw bytes). Throws
  // cqkv::Error for an id outside the vocabulary.
  std::string Decode(int32_t token) const;
  virtual const Vocab& vocab() const = 0;
  int32_t bos() const { return vocab().bos_id; }
  int32_t eos() const { return vocab().eos_id; }
  int32_t size() const { return static_cast<int32_t>(vocab().tokens.size()); }

 protected:
  // Decode's answer per token id, filled by each implementation's constructor (how a vocabulary
  // spells its pieces is the implementation's business; looking one up is not).
  std::vector<std::string> pieces_;
};

// Throws cqkv::Error for an unsupported vocabulary model.
std::unique_ptr<Tokenizer> MakeTokenizer(Vocab vocab);

}  // namespace cqkv
