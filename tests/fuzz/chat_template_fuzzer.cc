// Arbitrary conversations rendered by every chat-template family, and arbitrary Jinja text given
// to the family recognizer.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "muxserve/model/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const bool add_generation_prompt = input.ConsumeBool();
  const std::string bos = input.ConsumeRandomLengthString(16);
  const std::string jinja = input.ConsumeRandomLengthString(256);
  std::vector<muxserve::model::ChatMessage> messages;
  const int count = input.ConsumeIntegralInRange(0, 8);
  for (int i = 0; i < count; ++i) {
    muxserve::model::ChatMessage message;
    // Mostly valid roles, so the renderers get past the role check.
    const char* roles[] = {"system", "user", "assistant", ""};
    message.role = input.ConsumeBool() ? roles[input.ConsumeIntegralInRange(0, 3)]
                                       : input.ConsumeRandomLengthString(12);
    message.content = input.ConsumeRandomLengthString(128);
    messages.push_back(std::move(message));
  }
  for (const char* name : {"chatml", "llama3", "llama2", "mistral"}) {
    auto chat_template = muxserve::model::ChatTemplate::FromName(name);
    if (!chat_template.ok()) __builtin_trap();
    (void)chat_template->Render(messages, add_generation_prompt, bos);
  }
  auto recognized = muxserve::model::ChatTemplate::Recognize(jinja);
  if (recognized.ok()) (void)recognized->Render(messages, add_generation_prompt, bos);
  return 0;
}
