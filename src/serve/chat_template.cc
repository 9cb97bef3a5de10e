#include "serve/chat_template.h"

#include "util/error.h"

namespace cqkv {

ChatTemplateKind DetectChatTemplate(const std::string& jinja) {
  if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplateKind::kChatml;
  if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplateKind::kLlama3;
  if (jinja.find("[INST]") != std::string::npos) return ChatTemplateKind::kLlama2;
  return ChatTemplateKind::kPlain;
}

const char* ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kLlama2:
      return "llama-2";
    case ChatTemplateKind::kLlama3:
      return "llama-3";
    case ChatTemplateKind::kChatml:
      return "chatml";
    case ChatTemplateKind::kPlain:
      break;
  }
  return "plain";
}

namespace {

void CheckMessages(const std::vector<ChatMessage>& messages) {
  CQKV_CHECK(!messages.empty(), "chat: messages must not be empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    CQKV_CHECK(r == "system" || r == "user" || r == "assistant",
               "chat: messages[{}].role '{}' is not one of system, user, assistant", i, r);
  }
}

// Llama-2 folds the system prompt into the first user turn and closes each exchange with EOS.
std::string RenderLlama2(const std::vector<ChatMessage>& messages) {
  std::string out, system;
  bool first_user = true;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system = m.content;
    } else if (m.role == "user") {
      out += "[INST] ";
      if (first_user && !system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
      first_user = false;
      out += m.content + " [/INST]";
    } else {
      out += " " + m.content + " </s><s>";
    }
  }
  return out;
}

}  // namespace

std::string RenderChat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages) {
  CheckMessages(messages);
  std::string out;
  switch (kind) {
    case ChatTemplateKind::kLlama2:
      return RenderLlama2(messages);
    case ChatTemplateKind::kLlama3:
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatTemplateKind::kChatml:
      for (const ChatMessage& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      return out + "<|im_start|>assistant\n";
    case ChatTemplateKind::kPlain:
      break;
  }
  for (const ChatMessage& m : messages) out += m.role + ": " + m.content + "\n";
  return out + "assistant:";
}

}  // namespace cqkv
