// Whole-sequence decoding. Tokenizer::Decode gives one token's piece; joining pieces is not quite
// the original text for SentencePiece vocabularies, whose encoder adds a leading space.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "tokenizer/tokenizer.h"

namespace cqkv {

// The text of `ids`: pieces concatenated, control tokens (BOS/EOS) dropped, and for a
// SentencePiece vocabulary with add_space_prefix the one space the encoder prepended removed
// from the first piece, as SentencePiece's own decoder does. Decode(Encode(x)) == x for valid
// UTF-8 that the vocabulary can represent.
std::string Detokenize(const Tokenizer& tokenizer, std::span<const int32_t> ids);

}  // namespace cqkv
