#include "serve/chat_template.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace cqkv {
namespace {

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};

TEST(ChatTemplate, DetectsFamiliesByTheirMarkers) {
  EXPECT_EQ(DetectChatTemplate(""), ChatTemplateKind::kPlain);
  EXPECT_EQ(DetectChatTemplate("{% for m in messages %}<|im_start|>{{ m.role }}"),
            ChatTemplateKind::kChatml);
  EXPECT_EQ(DetectChatTemplate("<|start_header_id|>' + message['role'] + '<|end_header_id|>"),
            ChatTemplateKind::kLlama3);
  EXPECT_EQ(DetectChatTemplate("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatTemplateKind::kLlama2);
}

TEST(ChatTemplate, RendersEachFamily) {
  EXPECT_EQ(RenderChat(ChatTemplateKind::kChatml, kChat),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(RenderChat(ChatTemplateKind::kLlama3, {{"user", "Hi"}}),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(RenderChat(ChatTemplateKind::kLlama2, kChat),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]");
  EXPECT_EQ(RenderChat(ChatTemplateKind::kPlain, kChat),
            "system: Be brief.\nuser: Hi\nassistant: Hello.\nuser: Bye\nassistant:");
}

TEST(ChatTemplate, RejectsUnknownRolesAndEmptyChats) {
  EXPECT_THROW(RenderChat(ChatTemplateKind::kPlain, {}), Error);
  EXPECT_THROW(RenderChat(ChatTemplateKind::kChatml, {{"tool", "x"}}), Error);
}

}  // namespace
}  // namespace cqkv
