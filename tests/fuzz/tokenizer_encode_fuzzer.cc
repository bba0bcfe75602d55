// Arbitrary bytes (invalid UTF-8, special-token look-alikes, control characters) encoded by each
// tokenizer kind of the test fixtures (byte-level BPE, GPT-2, Llama 2 SentencePiece, Metaspace);
// the ids must lie in the vocabulary and decode back without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "muxserve/model/tokenizer.h"

namespace {

const std::vector<std::unique_ptr<muxserve::model::Tokenizer>>& Tokenizers() {
  static const auto* tokenizers = [] {
    auto* loaded = new std::vector<std::unique_ptr<muxserve::model::Tokenizer>>();
    for (const char* name : {"byte_level", "gpt2", "llama2", "metaspace"}) {
      auto tokenizer = muxserve::model::Tokenizer::Load(std::filesystem::path(MUXSERVE_SOURCE_DIR) /
                                                        "tests" / "model" / "testdata" / name);
      if (!tokenizer.ok()) std::abort();  // the fixtures load in the unit tests
      loaded->push_back(std::move(*tokenizer));
    }
    return loaded;
  }();
  return *tokenizers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto& tokenizer : Tokenizers()) {
    const std::vector<int32_t> ids = tokenizer->Encode(text, /*add_bos=*/size % 2 == 0);
    for (int32_t id : ids) {
      if (id < 0 || id >= tokenizer->vocab_size()) std::abort();
    }
    (void)tokenizer->Decode(ids, /*skip_special=*/size % 3 == 0);
    muxserve::model::StreamDecoder decoder(tokenizer.get(), /*skip_special=*/false);
    for (int32_t id : ids) (void)decoder.Push(id);
    (void)decoder.Flush();
  }
  return 0;
}
