// Reader for Hugging Face tokenizer.json files holding a byte-level BPE model (GPT-2, SmolLM2,
// Llama-3, Qwen2, ...). The pre_tokenizer's steps are mapped onto one of llama.cpp's pre-tokenizer
// families (pretokenizer.h); added tokens become control (special) or user-defined tokens.
// tokenizer.json does not say which token is BOS/EOS (tokenizer_config.json does), so those are
// inferred from the post-processor template and well-known special tokens.

#include <nlohmann/json.hpp>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab_io.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

using Json = nlohmann::json;

// Vocabulary ids beyond this are taken as a corrupt file rather than allocated.
constexpr int64_t kMaxVocab = 1 << 24;

bool IsType(const Json& j, const char* type) {
  return j.is_object() && j.contains("type") && j["type"] == type;
}

// An integer field, strictly: a JSON integer (not 1.0, not "1") within [lo, hi].
int64_t IntField(const Json& j, const std::string& field, int64_t lo, int64_t hi,
                 const std::string& path) {
  CQKV_CHECK(j.is_number_integer(), "{}: {} is {}, not an integer", path, field, j.dump());
  CQKV_CHECK(!j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(hi),
             "{}: {} = {} is outside {}..{}", path, field, j.dump(), lo, hi);
  const int64_t v = j.get<int64_t>();
  CQKV_CHECK(v >= lo && v <= hi, "{}: {} = {} is outside {}..{}", path, field, v, lo, hi);
  return v;
}

bool BoolField(const Json& obj, const char* key, bool def, const std::string& field,
               const std::string& path) {
  if (!obj.contains(key) || obj[key].is_null()) return def;
  CQKV_CHECK(obj[key].is_boolean(), "{}: {}.{} is {}, not true/false", path, field, key,
             obj[key].dump());
  return obj[key].get<bool>();
}

// What the pre_tokenizer does, as regex steps in order (each re-splitting the pieces of the one
// before, as a Hugging Face Sequence does), plus ByteLevel's add_prefix_space.
struct PreSteps {
  std::vector<std::string> patterns;
  bool byte_level = false;
  bool add_prefix_space = false;
};

void CollectSteps(const Json& pre, const std::string& field, const std::string& path,
                  PreSteps& steps) {
  CQKV_CHECK(pre.is_object() && pre.contains("type") && pre["type"].is_string(),
             "{}: {} is not a pre-tokenizer object with a 'type'", path, field);
  const std::string type = pre["type"].get<std::string>();
  if (type == "Sequence") {
    CQKV_CHECK(pre.contains("pretokenizers") && pre["pretokenizers"].is_array(),
               "{}: {}.pretokenizers is missing or not an array", path, field);
    for (size_t i = 0; i < pre["pretokenizers"].size(); ++i) {
      CollectSteps(pre["pretokenizers"][i], field + ".pretokenizers[" + std::to_string(i) + "]",
                   path, steps);
    }
  } else if (type == "ByteLevel") {
    steps.byte_level = true;
    steps.add_prefix_space = BoolField(pre, "add_prefix_space", false, field, path);
    if (BoolField(pre, "use_regex", true, field, path)) {
      steps.patterns.emplace_back(Gpt2WordPattern());
    }
  } else if (type == "Digits") {
    steps.patterns.emplace_back(
        BoolField(pre, "individual_digits", false, field, path) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Split") {
    const Json& pattern = pre.value("pattern", Json());
    CQKV_CHECK(pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string(),
               "{}: {}.pattern is not {{\"Regex\": \"...\"}}", path, field);
    const std::string behavior = pre.value("behavior", "");
    CQKV_CHECK(behavior == "Isolated", "{}: {}.behavior is '{}'; only Isolated is supported", path,
               field, behavior);
    CQKV_CHECK(!BoolField(pre, "invert", false, field, path),
               "{}: {}.invert is true; not supported", path, field);
    steps.patterns.push_back(pattern["Regex"].get<std::string>());
  } else {
    Fail("{}: {}.type '{}' is not supported (supported: Sequence, ByteLevel, Digits, Split)", path,
         field, type);
  }
}

std::string FamilyList() {
  std::string s;
  for (const PreTokenizerFamily& f : PreTokenizerFamilies())
    s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

// The special token a TemplateProcessing post-processor puts before a single sequence: that is
// the BOS transformers adds by default (e.g. LLaMA-3's <|begin_of_text|>).
std::string TemplateBos(const Json& post) {
  const Json* tp = nullptr;
  if (IsType(post, "TemplateProcessing")) tp = &post;
  if (IsType(post, "Sequence") && post.contains("processors")) {
    for (const Json& p : post["processors"]) {
      if (IsType(p, "TemplateProcessing")) tp = &p;
    }
  }
  if (tp == nullptr || !tp->contains("single") || !(*tp)["single"].is_array() ||
      (*tp)["single"].empty()) {
    return "";
  }
  const Json& first = (*tp)["single"][0];
  if (first.contains("SpecialToken") && first["SpecialToken"].contains("id")) {
    return first["SpecialToken"]["id"].get<std::string>();
  }
  return "";
}

// model.vocab and model.merges, taken out of the document while it is parsed: a 128K-entry
// vocabulary as a JSON object (a std::map) tripled the load time of a Llama-3 tokenizer.json.
struct BigArrays {
  std::vector<std::pair<std::string, Json>> vocab;  // in file order
  std::vector<Json> merges;
  std::string compound_vocab_key;  // a vocab entry whose value is an object or array
};

Json ParseTakingBigArrays(const std::string& text, BigArrays& big) {
  std::string key1, key2, key3;  // the member names on the path at depths 1, 2 and 3
  return Json::parse(text, [&](int depth, Json::parse_event_t event, Json& parsed) {
    using E = Json::parse_event_t;
    const bool in_model = key1 == "model";
    if (event == E::key) {
      if (depth <= 3) (depth == 1 ? key1 : depth == 2 ? key2 : key3) = parsed.get<std::string>();
      // Dropping the key keeps the entry out of the map; its value still comes to this callback.
      return !(depth == 3 && in_model && key2 == "vocab");
    }
    if (depth != 3 || !in_model) return true;
    if (key2 == "vocab") {
      if (event == E::value) big.vocab.emplace_back(key3, std::move(parsed));
      // Structured values under a dropped key never reach the callback again: remember them.
      if (event == E::object_start || event == E::array_start) big.compound_vocab_key = key3;
      return true;
    }
    if (key2 == "merges" &&
        (event == E::value || event == E::array_end || event == E::object_end)) {
      big.merges.push_back(std::move(parsed));
      return false;
    }
    return true;
  });
}

}  // namespace

Vocab ReadHfTokenizerJson(const std::string& path) {
  Json j;
  BigArrays big;
  try {
    j = ParseTakingBigArrays(ReadFile(path), big);
  } catch (const Json::exception& e) {
    Fail("{}: not valid JSON: {}", path, e.what());
  }

  Vocab v;
  v.model = "gpt2";
  try {
    CQKV_CHECK(j.contains("model") && j["model"].is_object(), "{}: no 'model' object", path);
    const Json& model = j["model"];
    const std::string type = model.value("type", "");
    CQKV_CHECK(type == "BPE", "{}: model.type is '{}'; only BPE is supported", path, type);
    PreSteps steps;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      CollectSteps(j["pre_tokenizer"], "pre_tokenizer", path, steps);
    }
    // SentencePiece-style BPE (LLaMA-2's tokenizer.json) needs scores the json does not have.
    CQKV_CHECK(steps.byte_level || IsType(j.value("decoder", Json()), "ByteLevel"),
               "{}: BPE model is not byte-level (no ByteLevel pre-tokenizer or decoder); only "
               "GPT-2 style byte-level BPE is supported",
               path);
    const PreTokenizerFamily* family = MatchPreTokenizer(steps.patterns);
    if (family == nullptr) {
      std::string list;
      for (const std::string& p : steps.patterns) list += (list.empty() ? "'" : ", '") + p + "'";
      Fail("{}: pre_tokenizer regex steps [{}] are not those of a supported family ({})", path,
           list, FamilyList());
    }
    v.pre = std::string(family->name);
    v.add_space_prefix = steps.add_prefix_space;
    v.ignore_merges = BoolField(model, "ignore_merges", false, "model", path);
    // Qwen2 ships an NFC normalizer; llama.cpp's conversions drop it, and so does this reader.
    const Json normalizer = j.value("normalizer", Json());
    CQKV_CHECK(normalizer.is_null() || IsType(normalizer, "NFC"),
               "{}: normalizer {} is not supported (only none or NFC)", path, normalizer.dump());

    CQKV_CHECK(model.contains("vocab") && model["vocab"].is_object(), "{}: model.vocab missing",
               path);
    CQKV_CHECK(big.compound_vocab_key.empty(), "{}: model.vocab['{}'] is not an integer", path,
               big.compound_vocab_key);
    std::vector<bool> seen;
    auto place = [&](const std::string& text, int64_t id, TokenType type) {
      CQKV_CHECK(id >= 0 && id < kMaxVocab, "{}: token '{}' has id {} (allowed 0..{})", path, text,
                 id, kMaxVocab - 1);
      if (id >= static_cast<int64_t>(v.tokens.size())) {
        v.tokens.resize(id + 1);
        v.types.resize(id + 1, TokenType::kUnused);
        seen.resize(id + 1, false);
      }
      v.tokens[id] = text;
      v.types[id] = type;
      seen[id] = true;
    };
    for (const auto& [text, id] : big.vocab) {
      place(text, IntField(id, "model.vocab['" + text + "']", 0, kMaxVocab - 1, path),
            TokenType::kNormal);
    }
    std::vector<std::pair<std::string, int32_t>> special;
    if (j.contains("added_tokens")) {
      CQKV_CHECK(j["added_tokens"].is_array(), "{}: added_tokens is not an array", path);
      for (size_t k = 0; k < j["added_tokens"].size(); ++k) {
        const Json& t = j["added_tokens"][k];
        const std::string field = "added_tokens[" + std::to_string(k) + "]";
        CQKV_CHECK(
            t.is_object() && t.contains("content") && t["content"].is_string() && t.contains("id"),
            "{}: {} needs a string 'content' and an 'id'", path, field);
        const std::string text = t["content"].get<std::string>();
        CQKV_CHECK(!text.empty(), "{}: {}.content is empty", path, field);
        const int64_t id = IntField(t["id"], field + ".id", 0, kMaxVocab - 1, path);
        const bool is_special = BoolField(t, "special", false, field, path);
        // Added tokens are stored as plain text, not in the byte alphabet.
        place(text, id, is_special ? TokenType::kControl : TokenType::kUserDefined);
        if (is_special) special.emplace_back(text, static_cast<int32_t>(id));
      }
    }
    // Ids no entry claims stay unused, with unique text so they can never match.
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (!seen[i]) v.tokens[i] = "<cqkv_unused_" + std::to_string(i) + ">";
    }

    CQKV_CHECK(!model.contains("merges") || model["merges"].is_array(),
               "{}: model.merges is not an array", path);
    {
      for (const Json& m : big.merges) {
        if (m.is_string()) {
          v.merges.push_back(m.get<std::string>());
        } else {
          // Newer files write [left, right] pairs.
          CQKV_CHECK(m.is_array() && m.size() == 2, "{}: merge {} is neither 'a b' nor [a, b]",
                     path, m.dump());
          v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        }
      }
    }

    auto find_special = [&](std::initializer_list<const char*> names) {
      for (const char* name : names) {
        for (const auto& [text, id] : special) {
          if (text == name) return id;
        }
      }
      return -1;
    };
    const std::string template_bos = TemplateBos(j.value("post_processor", Json()));
    if (!template_bos.empty()) {
      v.bos_id = find_special({template_bos.c_str()});
      v.add_bos = v.bos_id >= 0;
    } else {
      // No template: transformers adds nothing (SmolLM2, GPT-2). GPT-2-lineage tokenizers use
      // <|endoftext|> as both BOS and EOS in tokenizer_config.json, as GPT-2's GGUF does.
      v.bos_id = find_special({"<|endoftext|>", "<s>", "<|begin_of_text|>"});
      v.add_bos = false;
    }
    v.eos_id = find_special({"<|endoftext|>", "</s>", "<|end_of_text|>"});
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      const std::string unk = model["unk_token"].get<std::string>();
      for (size_t i = 0; i < v.tokens.size(); ++i) {
        if (v.tokens[i] == unk) v.unk_id = static_cast<int32_t>(i);
      }
    }
  } catch (const Json::exception& e) {
    Fail("{}: unexpected tokenizer.json structure: {}", path, e.what());
  }
  CQKV_CHECK(!v.tokens.empty(), "{}: model.vocab is empty", path);
  return v;
}

}  // namespace cqkv
