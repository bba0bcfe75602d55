// Tokenizers loaded from an HF tokenizer.json (+ tokenizer_config.json, generation_config.json).
// This version covers byte-level vocabularies (GPT-2 byte-to-unicode tokens, as in Llama 3 and
// Qwen2) and byte-fallback vocabularies (<0xNN> tokens with the metaspace "▁", as in Llama 2 and
// Mistral), BPE merges by rank, the NFC, Prepend and Replace normalizers, and added/special
// tokens that are never split (their lstrip, rstrip, single_word and normalized flags are not
// applied: the Llama-family files set none of them). tests/model/testdata/parity.jsonl holds
// HF `tokenizers`' ids and text for 2,400 strings on each fixture family.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace muxserve::model {

// Loaded once and then read-only: every method may be called from several threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads tokenizer.json from `model_dir`, with BOS/EOS and the chat template from
  // tokenizer_config.json and generation_config.json when present.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::filesystem::path& model_dir);

  // Special tokens written in `text` (e.g. "<|im_start|>") map to their ids. `add_bos` prepends
  // the BOS token when the tokenizer has one and its config asks for it.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos) const = 0;
  // Joined bytes of the tokens; invalid UTF-8 becomes U+FFFD as in HF's decode.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special) const = 0;
  // The raw bytes one token contributes to the output (may be a partial UTF-8 sequence).
  // `previous` is the token before it (-1 at the start), for decoders that strip a leading space.
  virtual std::string TokenBytes(int32_t id, int32_t previous) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> TokenId(std::string_view token) const = 0;

  virtual std::optional<int32_t> bos_id() const = 0;
  virtual const std::vector<int32_t>& eos_ids() const = 0;
  // The Jinja chat_template string of tokenizer_config.json, empty when there is none.
  virtual const std::string& chat_template() const = 0;
};

// Incremental detokenization for streaming: Push returns only text that is complete UTF-8, so
// the concatenation of everything returned (plus Flush) equals Decode of all ids.
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer* tokenizer, bool skip_special)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  std::string Push(int32_t id);
  // Whatever bytes are left at the end; an incomplete sequence becomes U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  int32_t previous_ = -1;
  std::string pending_;  // bytes of an incomplete UTF-8 sequence
};

}  // namespace muxserve::model
