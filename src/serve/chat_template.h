// Chat prompts: renders a conversation with the model's own template when its GGUF
// `tokenizer.chat_template` is one of the common families, else with a documented plain one.
// Only the families are recognised (by their marker tokens), not arbitrary Jinja.
#pragma once

#include <string>
#include <vector>

#include "cqkv/engine.h"

namespace cqkv {

enum class ChatTemplateKind {
  kPlain,   // "system: ...\nuser: ...\nassistant:"
  kLlama2,  // [INST] <<SYS>> ... <</SYS>> ... [/INST]
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kChatml,  // <|im_start|>role\n...<|im_end|>\n
};

// The family of a Jinja template text (empty: plain).
ChatTemplateKind DetectChatTemplate(const std::string& jinja);
const char* ChatTemplateName(ChatTemplateKind kind);

// The prompt text of `messages`, ending with the opening of the assistant's turn. BOS is not
// part of the text (the tokenizer adds it). Throws cqkv::Error for a role other than system,
// user or assistant, or an empty conversation.
std::string RenderChat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages);

}  // namespace cqkv
