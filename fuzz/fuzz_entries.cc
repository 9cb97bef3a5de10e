#include "fuzz/fuzz_entries.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "eval/dataset.h"
#include "fuzz/mem_file.h"
#include "gguf/gguf.h"
#include "kv/kv_spec.h"
#include "kv/mixed_spec.h"
#include "loader/loader.h"
#include "quant/codebook.h"
#include "serve/chat_template.h"
#include "serve/openai_api.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"
#include "util/error.h"

namespace cqkv::fuzz {
namespace {

// Touches every byte a reader hands out, so a view past the mapping faults here, in the target.
uint64_t Sum(const void* p, uint64_t n) {
  uint64_t s = 0;
  for (uint64_t i = 0; i < n; ++i) s += static_cast<const uint8_t*>(p)[i];
  return s;
}

// Reads every metadata value through the typed getter its type asks for, and every tensor's data.
void ReadAllOf(const GgufFile& g) {
  for (const auto& [key, v] : g.metadata()) {
    switch (v.type) {
      case GgufType::kString:
        g.GetString(key);
        break;
      case GgufType::kBool:
        g.GetBool(key);
        break;
      case GgufType::kFloat32:
      case GgufType::kFloat64:
        g.GetFloat(key);
        break;
      case GgufType::kArray:
        if (v.array_type == GgufType::kString) {
          g.GetStringArray(key);
        } else if (v.array_type == GgufType::kFloat32 || v.array_type == GgufType::kFloat64) {
          g.GetFloatArray(key);
        } else if (v.array_type != GgufType::kBool && v.array_type != GgufType::kArray) {
          g.GetIntArray(key);
        }
        break;
      default:
        g.GetInt(key);
    }
  }
  uint64_t sum = 0;
  for (const auto& t : g.tensors()) sum += Sum(g.TensorData(t), t.nbytes);
  (void)sum;
}

// Builds a tokenizer from `vocab` and uses it as generation does: encode text mixing ASCII,
// multi-byte and invalid UTF-8, then decode what came out and a range of ids.
void UseVocab(Vocab vocab) {
  const auto tok = MakeTokenizer(std::move(vocab));
  static constexpr std::string_view kText =
      "Once upon a time,  there was\na 3-year-old cat\t\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
      "\xf0\x9f\x98\x80 <s></s> \xff\xfe\x80 'll don't 12345";
  for (const bool bos : {false, true}) {
    for (const int32_t id : tok->Encode(kText, bos)) {
      CQKV_CHECK(id >= 0 && id < tok->size(), "fuzz: Encode returned id {} outside [0, {})", id,
                 tok->size());
      tok->Decode(id);
    }
  }
  for (int32_t id = 0; id < std::min(tok->size(), 2048); ++id) tok->Decode(id);
}

// The real vocabularies of ../shared, each built into a tokenizer once per process (loading the
// 128k-token ones takes a while under the sanitizers). The folder comes from $CQKV_SHARED, else
// the build's CQKV_SHARED_DIR; missing files are skipped, no file at all is a harness error.
const std::vector<std::unique_ptr<Tokenizer>>& SharedTokenizers() {
  static const auto tokenizers = [] {
    const char* env = std::getenv("CQKV_SHARED");
    const std::string dir = env && *env ? env : CQKV_SHARED_DIR;
    std::vector<std::unique_ptr<Tokenizer>> out;
    for (const char* rel :
         {"models/stories260K/tokenizer.bin", "tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf",
          "tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf",
          "tests/tokenizer-vectors/ggml-vocab-llama-bpe.gguf",
          "tests/tokenizer-vectors/ggml-vocab-qwen2.gguf", "tokenizers/smollm2.tokenizer.json"}) {
      const std::string path = dir + "/" + rel;
      if (!std::filesystem::exists(path)) continue;
      Vocab v = path.ends_with(".bin")    ? ReadLlama2cVocab(path)
                : path.ends_with(".json") ? ReadHfTokenizerJson(path)
                                          : VocabFromGguf(*GgufFile::Open(path));
      out.push_back(MakeTokenizer(std::move(v)));
    }
    if (out.empty()) throw std::runtime_error("fuzz: no vocabulary found under " + dir);
    return out;
  }();
  return tokenizers;
}

// First byte: which shared vocabulary (low bits) and whether to add BOS (high bit); the rest is
// the text, encoded and every resulting id decoded.
void TokenizeText(std::string_view bytes) {
  const auto& tokenizers = SharedTokenizers();
  if (bytes.empty()) return;
  const auto sel = static_cast<uint8_t>(bytes[0]);
  const Tokenizer& tok = *tokenizers[(sel & 0x7f) % tokenizers.size()];
  for (const int32_t id : tok.Encode(bytes.substr(1), (sel & 0x80) != 0)) {
    CQKV_CHECK(id >= 0 && id < tok.size(), "fuzz: Encode returned id {} outside [0, {})", id,
               tok.size());
    tok.Decode(id);
  }
}

void Gguf(std::string_view bytes) {
  const MemFile f(bytes);
  ReadAllOf(*GgufFile::Open(f.path()));
}

void GgufVocab(std::string_view bytes) {
  const MemFile f(bytes);
  UseVocab(VocabFromGguf(*GgufFile::Open(f.path())));
}

void GgufModel(std::string_view bytes) {
  const MemFile f(bytes);
  LoadGgufModel(f.path());
}

void Llama2c(std::string_view bytes) {
  const MemFile f(bytes);
  LoadLlama2cModel(f.path());
}

void TokenizerBin(std::string_view bytes) {
  const MemFile f(bytes);
  UseVocab(ReadLlama2cVocab(f.path()));
}

void TokenizerJson(std::string_view bytes) {
  const MemFile f(bytes);
  UseVocab(ReadHfTokenizerJson(f.path()));
}

// A .cqcb file ends in an FNV-1a checksum of every byte before it (quant/codebook.cc). Most
// inputs get a correct one, so mutations reach the header schema and the tables instead of
// stopping at "checksum mismatch"; inputs whose last byte is a multiple of 4 keep theirs, so
// that path is fuzzed too.
void Codebook(std::string_view bytes) {
  std::string file(bytes);
  if (file.size() >= 24 && (file.back() & 3) != 0) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i + 8 < file.size(); ++i) {
      h ^= static_cast<uint8_t>(file[i]);
      h *= 0x100000001b3ull;
    }
    std::memcpy(file.data() + file.size() - 8, &h, 8);
  }
  const MemFile f(file);
  LoadCodebooks(f.path());
}

// A mixed spec's layer lists are resolved against models of 1, 32 and 80 layers, as caches do.
void KvSpecText(std::string_view bytes) {
  const KvSpec spec = ParseKvSpec(std::string(bytes));
  if (spec.family != KvFamily::kMixed) return;
  for (const int n_layers : {1, 32, 80}) {
    try {
      ResolveMixedLayers(*spec.mixed, n_layers);
    } catch (const Error&) {
      // A layer past the model or left without a part: a clean error is the expected outcome.
    }
  }
}

// "SPEC\nCONTENT": the --data flag's value, then the file it names (a .jsonl file when the spec's
// path ends so, read with the spec's document range).
void DataSpec(std::string_view bytes) {
  const size_t nl = bytes.find('\n');
  const std::string_view content = nl == bytes.npos ? "" : bytes.substr(nl + 1);
  TextSource src = ParseTextSource(std::string(bytes.substr(0, nl)));
  const bool jsonl = src.path.size() >= 6 && src.path.ends_with(".jsonl");
  const MemFile f(content, jsonl ? ".jsonl" : ".txt");
  src.path = f.path();
  LoadText(src);
}

// First byte: even = /v1/completions, odd = /v1/chat/completions; the rest is the body. A 4xx
// ApiError is the server's way to reject a request (any other status is a finding).
void OpenAiRequest(std::string_view bytes) {
  if (bytes.empty()) return;
  const bool chat = bytes[0] & 1;
  const std::string_view body = bytes.substr(1);
  try {
    const serve::ApiRequest r =
        chat ? serve::ParseChatRequest(body) : serve::ParseCompletionRequest(body);
    if (chat) {
      for (const auto kind : {ChatTemplateKind::kPlain, ChatTemplateKind::kLlama2,
                              ChatTemplateKind::kLlama3, ChatTemplateKind::kChatml}) {
        RenderChat(kind, r.messages);
      }
    }
    serve::ResolveMaxTokens(r, static_cast<int>(r.prompt_tokens.size() + r.prompt.size() / 4), 512);
  } catch (const serve::ApiError& e) {
    if (e.status < 400 || e.status > 499) throw;
    throw Error(e.what());
  }
}

}  // namespace

const std::vector<Entry>& Entries() {
  static const std::vector<Entry> entries = {
      {"gguf", Gguf},
      {"gguf_vocab", GgufVocab},
      {"gguf_model", GgufModel},
      {"llama2c", Llama2c},
      {"tokenizer_bin", TokenizerBin},
      {"tokenizer_json", TokenizerJson},
      {"tokenize_text", TokenizeText},
      {"codebook", Codebook},
      {"kv_spec", KvSpecText},
      {"data_spec", DataSpec},
      {"openai_request", OpenAiRequest},
  };
  return entries;
}

EntryFn FindEntry(const std::string& name) {
  for (const Entry& e : Entries()) {
    if (name == e.name) return e.run;
  }
  Fail("fuzz: no target called '{}'", name);
}

int RunOne(EntryFn fn, const uint8_t* data, size_t size) {
  try {
    fn(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const Error&) {
    // The reader rejected the input, as it should: not a finding.
  }
  return 0;
}

}  // namespace cqkv::fuzz
