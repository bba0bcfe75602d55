#include "muxserve/model/chat_template.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::model {
namespace {

using ::testing::HasSubstr;

ChatTemplate Family(std::string_view name) {
  absl::StatusOr<ChatTemplate> chat_template = ChatTemplate::FromName(name);
  EXPECT_TRUE(chat_template.ok()) << chat_template.status();
  return *chat_template;
}

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "Capital of France?"},
};

TEST(ChatTemplateTest, ChatML) {
  absl::StatusOr<std::string> text = Family("chatml").Render(kConversation, true, "<s>");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nCapital of France?<|im_end|>\n"
            "<|im_start|>assistant\n");
  text = Family("chatml").Render(std::vector<ChatMessage>{{"user", "x"}}, false, "");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3) {
  absl::StatusOr<std::string> text =
      Family("llama3").Render(kConversation, true, "<|begin_of_text|>");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nCapital of France?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Contents are trimmed as Meta's template does.
  text = Family("llama3").Render(std::vector<ChatMessage>{{"user", "  x \n"}}, false, "B");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "B<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
}

TEST(ChatTemplateTest, Llama2) {
  absl::StatusOr<std::string> text = Family("llama2").Render(kConversation, true, "<s>");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
            "<s>[INST] Capital of France? [/INST]");
  std::vector<ChatMessage> no_system(kConversation.begin() + 1, kConversation.end());
  text = Family("llama2").Render(no_system, true, "<s>");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Capital of France? [/INST]");
}

TEST(ChatTemplateTest, Mistral) {
  absl::StatusOr<std::string> text = Family("mistral").Render(kConversation, true, "<s>");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<s>[INST] Be brief.\n\nHi! [/INST]Hello.</s>[INST] Capital of France? [/INST]");
}

TEST(ChatTemplateTest, NamesRoundTrip) {
  for (const char* name : {"chatml", "llama3", "llama2", "mistral"}) {
    EXPECT_EQ(Family(name).name(), name);
  }
  EXPECT_EQ(Family("llama3").kind(), ChatTemplateKind::kLlama3);
  absl::StatusOr<ChatTemplate> unknown = ChatTemplate::FromName("vicuna");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("'vicuna'"));
}

TEST(ChatTemplateTest, RecognizesHfTemplates) {
  const std::string qwen2 =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
      "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
      "bos_token + content %}{% endif %}{{ content }}{% endfor %}";
  const std::string llama2 =
      "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
      "messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + "
      "'[INST] ' + content | trim + ' [/INST]' }}";
  const std::string mistral =
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
      "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
      "{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
  EXPECT_EQ(ChatTemplate::Recognize(qwen2)->kind(), ChatTemplateKind::kChatML);
  EXPECT_EQ(ChatTemplate::Recognize(llama3)->kind(), ChatTemplateKind::kLlama3);
  EXPECT_EQ(ChatTemplate::Recognize(llama2)->kind(), ChatTemplateKind::kLlama2);
  EXPECT_EQ(ChatTemplate::Recognize(mistral)->kind(), ChatTemplateKind::kMistral);

  for (const std::string& unknown : {std::string(), std::string("{{ messages }} ### Human:")}) {
    absl::StatusOr<ChatTemplate> result = ChatTemplate::Recognize(unknown);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

struct RoleCase {
  std::string family;
  std::vector<ChatMessage> messages;
  std::string expected;
  friend void PrintTo(const RoleCase& c, std::ostream* os) {
    *os << c.family << ": " << c.expected;
  }
};

class ChatTemplateRoleTest : public ::testing::TestWithParam<RoleCase> {};

TEST_P(ChatTemplateRoleTest, IsInvalidArgumentNamingTheMessage) {
  absl::StatusOr<std::string> text =
      Family(GetParam().family).Render(GetParam().messages, true, "");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ChatTemplateRoleTest,
    ::testing::Values(
        RoleCase{"chatml", {}, "no messages"},
        RoleCase{"chatml", {{"user", "a"}, {"tool", "b"}}, "message 1: unknown role 'tool'"},
        RoleCase{"llama3", {{"user", "a"}, {"system", "b"}}, "message 1: a system message"},
        RoleCase{"llama2", {{"user", "a"}, {"user", "b"}}, "message 1: expected role 'assistant'"},
        RoleCase{
            "llama2", {{"system", "s"}, {"assistant", "b"}}, "message 1: expected role 'user'"},
        RoleCase{"llama2", {{"system", "s"}}, "message 1: a user message is required"},
        RoleCase{"mistral", {{"assistant", "a"}}, "message 0: expected role 'user'"},
        RoleCase{"mistral",
                 {{"user", "a"}, {"assistant", "b"}, {"assistant", "c"}},
                 "message 2: expected role 'user'"}));

}  // namespace
}  // namespace muxserve::model
