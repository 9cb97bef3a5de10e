// A KV format spec ("fp16", "cq:FILE:r32", "int4-channel:g64", "kivi2:r128", ...) parsed once,
// where it enters (a flag, an engine config), into typed fields: the formats then check only what
// depends on the model's shape, and a malformed spec fails before any model is loaded.
#pragma once

#include <memory>
#include <string>

namespace cqkv {

enum class KvFamily { kFp32, kFp16, kCq, kIntToken, kIntChannel, kNf, kKivi, kMixed, kTq };

struct MixedSpec;  // kv/mixed_spec.h

struct KvSpec {
  std::string text;  // as written: the cache's format() and every message quote it
  KvFamily family = KvFamily::kFp16;
  int bits = 0;      // int/nf/kivi code bits
  int group = 0;     // g<G>: channels (token layouts) or tokens (channel layouts); 0 = default
  int window = -1;   // r<R>: fp16 recent tokens of cq and kivi; -1 = the format's default
  std::string path;  // cq: the codebook file
  std::shared_ptr<const MixedSpec> mixed;  // kMixed: per-layer / per-K,V formats
  bool hadamard = false;  // int: `:hadamard`, rows rotated per head before quantisation
  bool qjl = false;       // tq: `:qjl`, keys spend one of their bits on a QJL residual sketch
};

// Throws cqkv::Error quoting `text` for an unknown family, option, bit width or a malformed
// number. Never opens files (a cq path is checked when the cache is made).
KvSpec ParseKvSpec(const std::string& text);

}  // namespace cqkv
