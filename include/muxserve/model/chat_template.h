// Chat templates rendered natively (no Jinja engine): the template family is recognised from the
// model's tokenizer_config.json chat_template, or named in the daemon's YAML.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace muxserve::model {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatTemplateKind { kChatML, kLlama3, kLlama2, kMistral };

class ChatTemplate {
 public:
  // From a family name ("chatml", "llama3", "llama2", "mistral").
  static absl::StatusOr<ChatTemplate> FromName(std::string_view name);
  // Recognises the family of an HF Jinja template by its markers; FAILED_PRECONDITION when it
  // matches none (the model then serves Generate but not Chat).
  static absl::StatusOr<ChatTemplate> Recognize(std::string_view jinja_template);

  // Renders the conversation. Roles other than system/user/assistant, or an order the family
  // does not allow, are INVALID_ARGUMENT naming the message index.
  absl::StatusOr<std::string> Render(std::span<const ChatMessage> messages,
                                     bool add_generation_prompt, std::string_view bos_token) const;
  ChatTemplateKind kind() const { return kind_; }
  std::string_view name() const;

 private:
  explicit ChatTemplate(ChatTemplateKind kind) : kind_(kind) {}
  ChatTemplateKind kind_;
};

}  // namespace muxserve::model
