#include "muxserve/model/chat_template.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve::model {
namespace {

struct FamilyName {
  ChatTemplateKind kind;
  std::string_view name;
};
constexpr std::array<FamilyName, 4> kFamilyNames = {{
    {ChatTemplateKind::kChatML, "chatml"},
    {ChatTemplateKind::kLlama3, "llama3"},
    {ChatTemplateKind::kLlama2, "llama2"},
    {ChatTemplateKind::kMistral, "mistral"},
}};

// The EOS text Llama 2 and Mistral templates write after each assistant turn.
constexpr std::string_view kSentencePieceEos = "</s>";

absl::Status RoleError(size_t index, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("message ", index, ": ", AsAbsl(message)));
}

// Roles must be known and a system message may only come first.
absl::Status CheckRoles(std::span<const ChatMessage> messages) {
  if (messages.empty()) return absl::InvalidArgumentError("no messages to render");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return RoleError(
          i, absl::StrCat("unknown role '", role, "' (expected system, user or assistant)"));
    }
    if (role == "system" && i != 0) {
      return RoleError(i, "a system message may only be the first message");
    }
  }
  return absl::OkStatus();
}

// Llama 2 and Mistral: after an optional system message, user and assistant alternate,
// starting with user.
absl::Status CheckAlternation(std::span<const ChatMessage> messages, size_t first) {
  for (size_t i = first; i < messages.size(); ++i) {
    const bool expect_user = (i - first) % 2 == 0;
    if ((messages[i].role == "user") != expect_user) {
      return RoleError(i, absl::StrCat("expected role '", expect_user ? "user" : "assistant",
                                       "': this template needs user and assistant to alternate, "
                                       "starting with user"));
    }
  }
  if (first == messages.size()) return RoleError(first, "a user message is required");
  return absl::OkStatus();
}

std::string Strip(std::string_view text) {
  return std::string(absl::StripAsciiWhitespace(AsAbsl(text)));
}

std::string RenderChatML(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& message : messages) {
    absl::StrAppend(&out, "<|im_start|>", message.role, "\n", message.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// As Meta's template: BOS once, each message's content trimmed.
std::string RenderLlama3(std::span<const ChatMessage> messages, bool add_generation_prompt,
                         std::string_view bos_token) {
  std::string out(bos_token);
  for (const ChatMessage& message : messages) {
    absl::StrAppend(&out, "<|start_header_id|>", message.role, "<|end_header_id|>\n\n",
                    Strip(message.content), "<|eot_id|>");
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// As Meta's Llama 2 template: the system message wraps into the first user turn, every user
// turn starts with BOS, contents are stripped. The prompt already ends where the answer starts.
std::string RenderLlama2(std::span<const ChatMessage> messages, std::string_view bos_token) {
  size_t first = 0;
  std::string system;
  if (messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    std::string content = messages[i].content;
    if (i == first && first == 1) {
      content = absl::StrCat("<<SYS>>\n", system, "\n<</SYS>>\n\n", content);
    }
    if (messages[i].role == "user") {
      absl::StrAppend(&out, AsAbsl(bos_token), "[INST] ", Strip(content), " [/INST]");
    } else {
      absl::StrAppend(&out, " ", Strip(content), " ", AsAbsl(kSentencePieceEos));
    }
  }
  return out;
}

// As Mistral's v0.1 template: BOS once; the system message is prepended to the first user turn.
std::string RenderMistral(std::span<const ChatMessage> messages, std::string_view bos_token) {
  size_t first = 0;
  std::string system;
  if (messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  std::string out(bos_token);
  for (size_t i = first; i < messages.size(); ++i) {
    if (messages[i].role == "user") {
      std::string content = messages[i].content;
      if (i == first && first == 1) content = absl::StrCat(system, "\n\n", content);
      absl::StrAppend(&out, "[INST] ", content, " [/INST]");
    } else {
      absl::StrAppend(&out, messages[i].content, AsAbsl(kSentencePieceEos));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromName(std::string_view name) {
  for (const FamilyName& family : kFamilyNames) {
    if (family.name == name) return ChatTemplate(family.kind);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template '", AsAbsl(name), "' (chatml, llama3, llama2, mistral)"));
}

absl::StatusOr<ChatTemplate> ChatTemplate::Recognize(std::string_view jinja_template) {
  if (jinja_template.empty()) {
    return absl::FailedPreconditionError("the model has no chat template");
  }
  // Most specific markers first: Llama 2 templates also contain [INST].
  if (jinja_template.find("<|im_start|>") != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kChatML);
  }
  if (jinja_template.find("<|start_header_id|>") != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kLlama3);
  }
  if (jinja_template.find("<<SYS>>") != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kLlama2);
  }
  if (jinja_template.find("[INST]") != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kMistral);
  }
  return absl::FailedPreconditionError(
      "the chat template matches no known family (chatml, llama3, llama2, mistral); name one "
      "in the model's configuration");
}

absl::StatusOr<std::string> ChatTemplate::Render(std::span<const ChatMessage> messages,
                                                 bool add_generation_prompt,
                                                 std::string_view bos_token) const {
  RETURN_IF_ERROR(CheckRoles(messages));
  const size_t first = messages[0].role == "system" ? 1 : 0;
  switch (kind_) {
    case ChatTemplateKind::kChatML:
      return RenderChatML(messages, add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      return RenderLlama3(messages, add_generation_prompt, bos_token);
    case ChatTemplateKind::kLlama2:
      RETURN_IF_ERROR(CheckAlternation(messages, first));
      return RenderLlama2(messages, bos_token);
    case ChatTemplateKind::kMistral:
      RETURN_IF_ERROR(CheckAlternation(messages, first));
      return RenderMistral(messages, bos_token);
  }
  return absl::InternalError("unknown chat template kind");
}

std::string_view ChatTemplate::name() const {
  for (const FamilyName& family : kFamilyNames) {
    if (family.kind == kind_) return family.name;
  }
  return "";
}

}  // namespace muxserve::model
