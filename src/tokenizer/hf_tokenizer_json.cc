// Reader for Hugging Face tokenizer.json files holding a byte-level BPE model (GPT-2, SmolLM2,
// ...). tokenizer.json does not say which token is BOS/EOS (tokenizer_config.json does), so
// those are inferred from the post-processor template and well-known special tokens.

#include <nlohmann/json.hpp>

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

// The ByteLevel step of a pre-tokenizer (possibly inside a Sequence), or nullptr.
const Json* FindByteLevel(const Json& pre) {
  if (IsType(pre, "ByteLevel")) return &pre;
  if (IsType(pre, "Sequence") && pre.contains("pretokenizers")) {
    for (const Json& p : pre["pretokenizers"]) {
      if (IsType(p, "ByteLevel")) return &p;
    }
  }
  return nullptr;
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

}  // namespace

Vocab ReadHfTokenizerJson(const std::string& path) {
  Json j;
  try {
    j = Json::parse(ReadFile(path));
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
    const Json pre = j.value("pre_tokenizer", Json());
    const Json* byte_level = FindByteLevel(pre);
    // SentencePiece-style BPE (LLaMA's tokenizer.json) needs scores the json does not have.
    CQKV_CHECK(byte_level != nullptr || IsType(j.value("decoder", Json()), "ByteLevel"),
               "{}: BPE model is not byte-level (no ByteLevel pre-tokenizer or decoder); only "
               "GPT-2 style byte-level BPE is supported",
               path);
    v.add_space_prefix = byte_level != nullptr && byte_level->value("add_prefix_space", false);

    CQKV_CHECK(model.contains("vocab") && model["vocab"].is_object(), "{}: model.vocab missing",
               path);
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
    // An id must be a JSON integer: converting 1e90 to int64 is undefined, 1.5 would truncate.
    auto id_of = [&](const Json& id, const std::string& text) {
      CQKV_CHECK(id.is_number_integer(), "{}: token '{}' has id {}, not an integer", path, text,
                 id.dump());
      return id.get<int64_t>();
    };
    for (const auto& [text, id] : model["vocab"].items()) {
      place(text, id_of(id, text), TokenType::kNormal);
    }
    std::vector<std::pair<std::string, int32_t>> special;
    if (j.contains("added_tokens")) {
      for (const Json& t : j["added_tokens"]) {
        const std::string text = t.at("content").get<std::string>();
        const int64_t id = id_of(t.at("id"), text);
        const bool is_special = t.value("special", false);
        // Added tokens are stored as plain text, not in the byte alphabet.
        place(text, id, is_special ? TokenType::kControl : TokenType::kUserDefined);
        if (is_special) special.emplace_back(text, static_cast<int32_t>(id));
      }
    }
    // Ids no entry claims stay unused, with unique text so they can never match.
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (!seen[i]) v.tokens[i] = "<cqkv_unused_" + std::to_string(i) + ">";
    }

    if (model.contains("merges")) {
      for (const Json& m : model["merges"]) {
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
