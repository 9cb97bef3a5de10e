// Pre-tokenizer regexes, one entry per llama.cpp pre-type. The patterns are PCRE2 syntax with
// Unicode properties, so where llama.cpp had to rewrite a tokenizer.json regex for std::regex
// (\p{Lu} classes emulated by lookaheads) the original is used; case-insensitive contraction
// groups are spelled out ('[sS]) as llama.cpp does, which keeps PCRE2's caseless matching of
// U+017F out of them. Families llama.cpp implements with custom code (kimi-k2, afmoe, gemma4) or
// long literal tables (youtu, chameleon, superbpe) are not in the table.

#include "tokenizer/pretokenizer.h"

#include "util/error.h"

namespace cqkv {
namespace {

#define CQKV_CONTRACTIONS R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))"
#define CQKV_GPT2 R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"
// Upper-then-lower and all-upper words, the gpt-4o/tekken word rule.
#define CQKV_CASED_WORD(suffix)                                                            \
  R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)" suffix \
  R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)" suffix
#define CQKV_TAIL R"(|\s*[\r\n]+|\s+(?!\S)|\s+)"

constexpr std::string_view kLlama3 =
    CQKV_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)" CQKV_TAIL;
constexpr std::string_view kGpt4o =
    CQKV_CASED_WORD(CQKV_CONTRACTIONS "?") R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" CQKV_TAIL;

std::vector<PreTokenizerFamily> BuildTable() {
  std::vector<PreTokenizerFamily> t;
  // llama.cpp's fallback for BPE vocabularies without a pre-type.
  t.push_back(
      {"default", {}, {R"([\p{P}\$\+<=>\^~\|]+)", CQKV_GPT2, R"(\p{N}+)", R"([0-9][0-9][0-9])"}});
  t.push_back(
      {"gpt-2",
       {"phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
        "modern-bert", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"},
       {CQKV_GPT2}});
  t.push_back({"llama-bpe",
               {"llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                "jina-v5-nano"},
               {kLlama3},
               /*ignore_merges=*/true,
               /*add_bos=*/true});
  t.push_back({"dbrx", {"smaug-bpe"}, {kLlama3}});
  t.push_back({"qwen2",
               {"deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan",
                "solar-open", "grok-2"},
               {CQKV_CONTRACTIONS
                R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)" CQKV_TAIL}});
  t.push_back(
      {"qwen35",
       {},
       {CQKV_CONTRACTIONS
        R"(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*)" CQKV_TAIL}});
  t.push_back({"smollm",
               {"starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
               {R"(\p{N})", CQKV_GPT2}});
  t.push_back({"gpt-4o", {"llama4", "kanana2", "minimax-m2"}, {kGpt4o}});
  t.push_back({"tekken",
               {},
               {CQKV_CASED_WORD("") R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)" CQKV_TAIL},
               /*ignore_merges=*/true,
               /*add_bos=*/true});
  t.push_back({"tiny_aya", {}, {R"(\d{1,3}(?=(?:\d{3})*\b))", kGpt4o}});
  t.push_back({"falcon", {}, {R"([\p{P}\$\+<=>\^~\|`]+)", CQKV_GPT2, R"([0-9][0-9][0-9])"}});
  t.push_back({"bloom", {"poro-chat", "gpt3-finnish"}, {R"( ?[^(\s|.,!?…。，、।۔،)]+)"}});
  t.push_back({"viking", {}, {R"( ?[^(\s|.,!?…。，、।۔،)]+)", R"(\p{N})"}});
  t.push_back({"jais-2",
               {},
               {CQKV_CONTRACTIONS
                R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+)"
                R"(|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S))"
                R"(|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})"}});
  t.push_back({"seed-coder",
               {},
               {CQKV_CONTRACTIONS
                R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+)" CQKV_TAIL}});
  // The tokenizer.json regex has possessive quantifiers, which PCRE2 supports as written.
  t.push_back({"bailingmoe",
               {"bailingmoe2", "llada-moe"},
               {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N})"
                R"(| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)"}});
  t.push_back({"exaone-moe",
               {},
               {CQKV_CONTRACTIONS R"(|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N})"
                                  R"(| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)"}});
  t.push_back({"deepseek-v3",
               {"hunyuan-dense", "joyai-llm"},
               {R"(\p{N}{1,3})", R"([一-龥぀-ゟ゠-ヿ]+)",
                R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+)"
                R"(|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*)" CQKV_TAIL}});
  // deepseek-llm spells its letter class out as literal ranges (from its tokenizer.json).
  t.push_back(
      {"deepseek-llm",
       {},
       {R"([\r\n])",
        R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)",
        R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)", R"(\s+$)", R"([一-龥ࠀ-一가-퟿]+)",
        R"(\p{N}+)"}});
  t.push_back(
      {"deepseek-coder",
       {},
       {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", R"([一-龥ࠀ-一가-퟿]+)", R"(\p{N})"}});
  return t;
}

#undef CQKV_CONTRACTIONS
#undef CQKV_GPT2
#undef CQKV_CASED_WORD
#undef CQKV_TAIL

// Rewrites tokenizer.json's case-insensitive contraction groups to the spelled-out form the table
// uses, so both spellings compare equal.
std::string NormaliseContractions(std::string p) {
  static constexpr std::string_view kCaseless = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  static constexpr std::string_view kSpelled =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
  for (size_t at = p.find(kCaseless); at != std::string::npos; at = p.find(kCaseless, at)) {
    p.replace(at, kCaseless.size(), kSpelled);
    at += kSpelled.size();
  }
  return p;
}

}  // namespace

const std::vector<PreTokenizerFamily>& PreTokenizerFamilies() {
  static const std::vector<PreTokenizerFamily> table = BuildTable();
  return table;
}

std::string_view Gpt2WordPattern() { return FindPreTokenizer("gpt-2", "").patterns[0]; }

const PreTokenizerFamily& FindPreTokenizer(std::string_view pre, std::string_view where) {
  if (pre.empty()) pre = "default";
  std::string known;
  for (const PreTokenizerFamily& f : PreTokenizerFamilies()) {
    if (f.name == pre) return f;
    for (std::string_view a : f.aliases) {
      if (a == pre) return f;
    }
    known += known.empty() ? "" : ", ";
    known += f.name;
    for (std::string_view a : f.aliases) known += ", " + std::string(a);
  }
  Fail("{}: tokenizer.ggml.pre = '{}' is not a supported pre-tokenizer (supported: {})", where, pre,
       known);
}

const PreTokenizerFamily* MatchPreTokenizer(const std::vector<std::string>& patterns) {
  std::vector<std::string> normal;
  for (const std::string& p : patterns) normal.push_back(NormaliseContractions(p));
  for (const PreTokenizerFamily& f : PreTokenizerFamilies()) {
    if (f.patterns.size() != normal.size()) continue;
    bool same = true;
    for (size_t i = 0; i < normal.size() && same; ++i) same = normal[i] == f.patterns[i];
    if (same) return &f;
  }
  return nullptr;
}

}  // namespace cqkv
