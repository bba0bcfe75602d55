#include "muxserve/model/tokenizer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <functional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "pre_tokenizer.h"
#include "utf8.h"

namespace muxserve::model {
namespace {

// Ids beyond this are a damaged file, not a vocabulary (the largest real ones are ~256k).
constexpr int64_t kMaxTokenId = int64_t{1} << 21;

// One step of the decoder of tokenizer.json, applied to each token in turn.
struct DecodeStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kStrip, kMetaspace };
  Kind kind = kByteLevel;
  std::string from;     // kReplace: the pattern; kStrip: the char; kMetaspace: the replacement
  std::string to;       // kReplace
  int strip_count = 0;  // kStrip: leading chars removed from the first token
  bool strip_first_space = false;  // kMetaspace: prepend scheme other than "never"
};

absl::Status ParseDecoder(const nlohmann::json& node, const std::string& origin, int depth,
                          std::vector<DecodeStep>* steps) {
  if (!node.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": decoder: expected an object (ByteLevel, or a Sequence with ByteFallback)"));
  }
  const std::string type = node.value("type", "");
  DecodeStep step;
  if (type == "Sequence") {
    if (depth >= kMaxSequenceNesting) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": decoder: Sequences nest deeper than ", kMaxSequenceNesting));
    }
    auto list = node.find("decoders");
    if (list == node.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": decoder.decoders: expected a list"));
    }
    for (const nlohmann::json& child : *list) {
      RETURN_IF_ERROR(ParseDecoder(child, origin, depth + 1, steps));
    }
    return absl::OkStatus();
  }
  if (type == "Fuse") return absl::OkStatus();  // tokens are concatenated anyway
  if (type == "ByteLevel") {
    step.kind = DecodeStep::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = DecodeStep::kByteFallback;
  } else if (type == "Replace") {
    step.kind = DecodeStep::kReplace;
    auto pattern = node.find("pattern");
    if (pattern == node.end() || !pattern->is_object() || !pattern->contains("String") ||
        !(*pattern)["String"].is_string()) {
      return absl::UnimplementedError(
          absl::StrCat(origin, ": decoder Replace: only {\"String\": ...} patterns are supported"));
    }
    step.from = (*pattern)["String"].get<std::string>();
    step.to = node.value("content", "");
    if (step.from.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": decoder Replace: empty pattern"));
    }
  } else if (type == "Strip") {
    step.kind = DecodeStep::kStrip;
    step.from = node.value("content", " ");
    step.strip_count = node.value("start", 0);
    if (node.value("stop", 0) != 0) {
      return absl::UnimplementedError(
          absl::StrCat(origin, ": decoder Strip: stripping the end (stop > 0) is not supported"));
    }
  } else if (type == "Metaspace") {
    step.kind = DecodeStep::kMetaspace;
    step.from = node.value("replacement", "\xE2\x96\x81");
    std::string scheme = node.contains("prepend_scheme") && node["prepend_scheme"].is_string()
                             ? node["prepend_scheme"].get<std::string>()
                             : (node.value("add_prefix_space", true) ? "always" : "never");
    step.strip_first_space = scheme != "never";
  } else {
    return absl::UnimplementedError(
        absl::StrCat(origin, ": decoder '", type, "' is not supported"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

// "<0xNN>" -> NN, the tokens of byte-fallback vocabularies.
std::optional<uint8_t> ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token.back() != '>') return std::nullopt;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<uint8_t>(value);
}

// Whether a post_processor (TemplateProcessing, possibly inside a Sequence) puts `token` first.
bool TemplatePrepends(const nlohmann::json& processor, const std::string& token, int depth = 0) {
  if (!processor.is_object() || depth > kMaxSequenceNesting) return false;
  const std::string type = processor.value("type", "");
  if (type == "Sequence") {
    auto list = processor.find("processors");
    if (list == processor.end() || !list->is_array()) return false;
    return std::any_of(list->begin(), list->end(), [&](const nlohmann::json& child) {
      return TemplatePrepends(child, token, depth + 1);
    });
  }
  if (type != "TemplateProcessing") return false;
  auto single = processor.find("single");
  if (single == processor.end() || !single->is_array() || single->empty()) return false;
  const nlohmann::json& first = (*single)[0];
  return first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object() &&
         first["SpecialToken"].value("id", "") == token;
}

uint64_t NextInstanceId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(const nlohmann::json& root,
                                                                const std::string& origin);
  // tokenizer_config.json, chat_template.jinja and generation_config.json of `model_dir`.
  absl::Status LoadConfigs(const std::filesystem::path& model_dir, const nlohmann::json& root);
  // generation_config.json's eos_token_id (an id or a list) adds to the EOS ids.
  absl::Status LoadGenerationConfig(const std::filesystem::path& path);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override;
  std::string TokenBytes(int32_t id, int32_t previous) const override;
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> TokenId(std::string_view token) const override {
    auto it = token_to_id_.find(AsAbsl(token));
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const override { return eos_ids_; }
  const std::string& chat_template() const override { return chat_template_; }

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
  };
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  absl::Status AddToken(const std::string& token, int64_t id, const std::string& origin,
                        std::string_view where);
  absl::Status ParseModel(const nlohmann::json& model, const std::string& origin);
  absl::Status ParseAddedTokens(const nlohmann::json& added, const std::string& origin);
  void EncodeSegment(std::string_view segment, size_t offset, std::vector<int32_t>* ids) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  // Fills short_char_ids_ once the vocabulary and added tokens are in.
  void IndexShortChars();
  // The token of one char of a word (a well-formed char, or one ill-formed byte), or -1.
  int32_t CharId(std::string_view piece) const {
    const auto lead = static_cast<uint8_t>(piece[0]);
    if (piece.size() == 1 && lead < 0x80) return short_char_ids_[lead];
    if (piece.size() == 2) {
      return short_char_ids_[(uint32_t{lead} & 0x1F) << 6 |
                             (static_cast<uint8_t>(piece[1]) & 0x3F)];
    }
    auto it = token_to_id_.find(AsAbsl(piece));
    return it != token_to_id_.end() ? it->second : -1;
  }

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  absl::flat_hash_map<std::pair<int32_t, int32_t>, Merge> merges_;
  std::array<int32_t, 256> byte_fallback_ids_{};
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  // Tokens of the chars of one and two UTF-8 bytes (U+0000..U+07FF, which hold every byte-level
  // char), by code point, -1 where there is none: the chars of most words, without hashing.
  std::vector<int32_t> short_char_ids_;
  PreTokenizer pre_tokenizer_;
  std::vector<DecodeStep> decode_steps_;
  // Added tokens by their first byte, longest first, for the longest match at each position.
  std::array<std::vector<AddedToken>, 256> added_by_first_byte_;

  // Tells this tokenizer's word caches from those of tokenizers before it at the same address.
  const uint64_t instance_id_ = NextInstanceId();

  std::optional<int32_t> bos_id_;
  bool add_bos_ = false;
  std::vector<int32_t> eos_ids_;
  std::string chat_template_;
};

absl::Status BpeTokenizer::AddToken(const std::string& token, int64_t id, const std::string& origin,
                                    std::string_view where) {
  if (id < 0 || id >= kMaxTokenId) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", AsAbsl(where), ": token '", token,
                                                   "' has id ", id, " outside [0, ", kMaxTokenId,
                                                   ")"));
  }
  if (static_cast<size_t>(id) >= id_to_token_.size()) {
    id_to_token_.resize(static_cast<size_t>(id) + 1);
    special_.resize(static_cast<size_t>(id) + 1, false);
  }
  auto [it, inserted] = token_to_id_.emplace(token, static_cast<int32_t>(id));
  if (!inserted && it->second != id) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", AsAbsl(where), ": token '", token,
                                                   "' has ids ", it->second, " and ", id));
  }
  id_to_token_[static_cast<size_t>(id)] = token;
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseModel(const nlohmann::json& model, const std::string& origin) {
  if (!model.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": key 'model': expected an object"));
  }
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(origin, ": key 'model.type': '", type,
                                                 "' models are not supported (BPE only)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return absl::UnimplementedError(
          absl::StrCat(origin, ": key 'model.", key, "' is not supported"));
    }
  }
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": key 'model.vocab': missing or not an object"));
  }
  for (const auto& [token, id] : vocab->items()) {
    std::optional<int64_t> value = JsonToInt64(id);
    if (!value.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": key 'model.vocab': token '", token, "' has a non-integer id"));
    }
    RETURN_IF_ERROR(AddToken(token, *value, origin, "model.vocab"));
  }

  auto merges = model.find("merges");
  if (merges != model.end() && !merges->is_null()) {
    if (!merges->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": key 'model.merges': expected a list"));
    }
    int32_t rank = 0;
    for (const nlohmann::json& merge : *merges) {
      std::string left;
      std::string right;
      if (merge.is_string()) {
        std::vector<std::string> parts = absl::StrSplit(merge.get<std::string>(), ' ');
        if (parts.size() == 2) {
          left = std::move(parts[0]);
          right = std::move(parts[1]);
        }
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                 merge[1].is_string()) {
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      }
      const std::string where = absl::StrCat(origin, ": key 'model.merges[", rank, "]'");
      if (left.empty() || right.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": expected \"a b\" or [\"a\", \"b\"], got ", JsonSnippet(merge)));
      }
      std::optional<int32_t> left_id = TokenId(left);
      std::optional<int32_t> right_id = TokenId(right);
      std::optional<int32_t> merged_id = TokenId(left + right);
      const std::string merged = left + right;
      const std::string* missing = !left_id.has_value()     ? &left
                                   : !right_id.has_value()  ? &right
                                   : !merged_id.has_value() ? &merged
                                                            : nullptr;
      if (missing != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": '", *missing, "' is not in the vocabulary"));
      }
      merges_.try_emplace({*left_id, *right_id}, Merge{rank, *merged_id});
      ++rank;
    }
  }

  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);
  byte_fallback_ids_.fill(-1);
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    if (std::optional<int32_t> id = TokenId(name)) byte_fallback_ids_[byte] = *id;
  }
  auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) {
    unk_id_ = TokenId(unk->get<std::string>());
    if (!unk_id_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": key 'model.unk_token': '",
                                                     unk->get<std::string>(),
                                                     "' is not in the vocabulary"));
    }
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseAddedTokens(const nlohmann::json& added,
                                            const std::string& origin) {
  if (added.is_null()) return absl::OkStatus();
  if (!added.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": key 'added_tokens': expected a list"));
  }
  for (size_t i = 0; i < added.size(); ++i) {
    const nlohmann::json& token = added[i];
    const std::string where = absl::StrCat("added_tokens[", i, "]");
    if (!token.is_object() || !token.contains("content") || !token["content"].is_string() ||
        token["content"].get<std::string>().empty() || !token.contains("id")) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": key '", where, "': expected {\"id\": ..., \"content\": \"...\"}"));
    }
    const std::string content = token["content"].get<std::string>();
    std::optional<int64_t> id = JsonToInt64(token["id"]);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": key '", where, ".id': expected an integer"));
    }
    RETURN_IF_ERROR(AddToken(content, *id, origin, where));
    special_[static_cast<size_t>(*id)] = token.value("special", false);
    added_by_first_byte_[static_cast<uint8_t>(content[0])].push_back(
        {content, static_cast<int32_t>(*id)});
  }
  for (auto& bucket : added_by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [](const AddedToken& a, const AddedToken& b) {
      return a.content.size() > b.content.size();
    });
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(const nlohmann::json& root,
                                                                     const std::string& origin) {
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": expected a JSON object"));
  }
  auto tokenizer = std::make_unique<BpeTokenizer>();
  auto model = root.find("model");
  if (model == root.end()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": missing required key 'model'"));
  }
  RETURN_IF_ERROR(tokenizer->ParseModel(*model, origin));
  RETURN_IF_ERROR(
      tokenizer->ParseAddedTokens(root.value("added_tokens", nlohmann::json()), origin));
  tokenizer->IndexShortChars();
  ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_,
                   PreTokenizer::FromJson(root.value("normalizer", nlohmann::json()),
                                          root.value("pre_tokenizer", nlohmann::json()), origin));
  RETURN_IF_ERROR(
      ParseDecoder(root.value("decoder", nlohmann::json()), origin, 0, &tokenizer->decode_steps_));
  return tokenizer;
}

// Reads bos_token / eos_token of tokenizer_config.json: a string, {"content": ...} or null.
absl::StatusOr<std::optional<std::string>> SpecialTokenContent(const nlohmann::json& config,
                                                               std::string_view key,
                                                               const std::string& origin) {
  auto value = config.find(key);
  if (value == config.end() || value->is_null()) return std::nullopt;
  if (value->is_string()) return value->get<std::string>();
  if (value->is_object() && value->contains("content") && (*value)["content"].is_string()) {
    return (*value)["content"].get<std::string>();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": key '", AsAbsl(key), "': expected a string or {\"content\": ...}"));
}

absl::Status BpeTokenizer::LoadConfigs(const std::filesystem::path& model_dir,
                                       const nlohmann::json& root) {
  std::error_code error;
  const std::filesystem::path config_path = model_dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path, error)) {
    const std::string origin = config_path.string();
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    ASSIGN_OR_RETURN(nlohmann::json config, ParseJson(text, origin));
    if (!config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": expected a JSON object"));
    }
    JsonObjectReader reader(config, origin);
    ASSIGN_OR_RETURN(std::optional<std::string> bos,
                     SpecialTokenContent(config, "bos_token", origin));
    ASSIGN_OR_RETURN(std::optional<std::string> eos,
                     SpecialTokenContent(config, "eos_token", origin));
    if (bos.has_value()) {
      bos_id_ = TokenId(*bos);
      if (!bos_id_.has_value()) {
        return reader.Error("bos_token", absl::StrCat("'", *bos, "' is not in the vocabulary"));
      }
    }
    if (eos.has_value()) {
      std::optional<int32_t> eos_id = TokenId(*eos);
      if (!eos_id.has_value()) {
        return reader.Error("eos_token", absl::StrCat("'", *eos, "' is not in the vocabulary"));
      }
      eos_ids_.push_back(*eos_id);
    }
    ASSIGN_OR_RETURN(std::optional<bool> add_bos, reader.OptionalBool("add_bos_token"));
    // Without add_bos_token (Llama 3), the post-processor's template says whether BOS leads.
    add_bos_ = add_bos.has_value()
                   ? *add_bos
                   : bos.has_value() &&
                         TemplatePrepends(root.value("post_processor", nlohmann::json()), *bos);
    if (const nlohmann::json* chat_template = reader.Find("chat_template")) {
      if (chat_template->is_string()) {
        chat_template_ = chat_template->get<std::string>();
      } else if (chat_template->is_array()) {
        // Named templates: [{"name": "default", "template": ...}, ...]; "default" else the first.
        for (const nlohmann::json& named : *chat_template) {
          if (!named.is_object() || !named.contains("template") || !named["template"].is_string()) {
            return reader.Error("chat_template", "expected a list of {name, template}");
          }
          if (chat_template_.empty() || named.value("name", "") == "default") {
            chat_template_ = named["template"].get<std::string>();
          }
          if (named.value("name", "") == "default") break;
        }
      } else {
        return reader.Error("chat_template", "expected a string or a list of {name, template}");
      }
    }
  }

  const std::filesystem::path jinja_path = model_dir / "chat_template.jinja";
  if (chat_template_.empty() && std::filesystem::exists(jinja_path, error)) {
    ASSIGN_OR_RETURN(chat_template_, ReadFileToString(jinja_path));
  }
  return LoadGenerationConfig(model_dir / "generation_config.json");
}

absl::Status BpeTokenizer::LoadGenerationConfig(const std::filesystem::path& path) {
  std::error_code error;
  if (std::filesystem::exists(path, error)) {
    const std::string origin = path.string();
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    ASSIGN_OR_RETURN(nlohmann::json config, ParseJson(text, origin));
    if (!config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": expected a JSON object"));
    }
    JsonObjectReader reader(config, origin);
    if (const nlohmann::json* eos = reader.Find("eos_token_id")) {
      std::vector<nlohmann::json> items;
      if (eos->is_array()) {
        items.assign(eos->begin(), eos->end());
      } else {
        items.push_back(*eos);
      }
      for (const nlohmann::json& item : items) {
        std::optional<int64_t> id = JsonToInt64(item);
        if (!id.has_value() || *id < 0 || *id >= vocab_size()) {
          return reader.Error("eos_token_id",
                              absl::StrCat("expected token ids in [0, ", vocab_size(), "), got ",
                                           JsonSnippet(*eos)));
        }
        if (std::find(eos_ids_.begin(), eos_ids_.end(), *id) == eos_ids_.end()) {
          eos_ids_.push_back(static_cast<int32_t>(*id));
        }
      }
    }
  }
  return absl::OkStatus();
}

void BpeTokenizer::IndexShortChars() {
  constexpr uint32_t kShortChars = 0x800;
  short_char_ids_.assign(kShortChars, -1);
  for (uint32_t code_point = 0; code_point < kShortChars; ++code_point) {
    std::string text;
    AppendCodePoint(code_point, &text);
    if (auto it = token_to_id_.find(text); it != token_to_id_.end()) {
      short_char_ids_[code_point] = it->second;
    }
  }
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    if (auto it = token_to_id_.find(AsAbsl(word)); it != token_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  // The word's chars (or their byte-fallback tokens), linked so that merges can unlink.
  struct Symbol {
    int32_t id;
    int prev;
    int next;
    bool alive;
  };
  // Scratch space of this thread, kept between words so that encoding allocates nothing.
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto append = [&](int32_t id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  for (size_t position = 0; position < word.size();) {
    const size_t length = Utf8CharLength(word.substr(position));
    std::string_view piece = word.substr(position, length);
    position += length;
    if (const int32_t id = CharId(piece); id >= 0) {
      append(id);
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (char byte : piece)
      all_bytes = all_bytes && byte_fallback_ids_[static_cast<uint8_t>(byte)] >= 0;
    if (all_bytes) {
      for (char byte : piece) append(byte_fallback_ids_[static_cast<uint8_t>(byte)]);
    } else if (unk_id_.has_value()) {
      append(*unk_id_);
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  // Lowest rank first, then leftmost, as HF's BPE applies merges.
  struct Candidate {
    int32_t rank;
    int left;
    int32_t merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  // A min-heap on (rank, left) in this thread's scratch vector.
  thread_local std::vector<Candidate> queue;
  queue.clear();
  auto consider = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    auto it = merges_.find({symbols[left].id, symbols[symbols[left].next].id});
    if (it == merges_.end()) return;
    queue.push_back({it->second.rank, left, it->second.merged_id});
    std::push_heap(queue.begin(), queue.end(), std::greater<>());
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), std::greater<>());
    const Candidate top = queue.back();
    queue.pop_back();
    Symbol& left = symbols[top.left];
    if (!left.alive || left.next < 0) continue;
    auto it = merges_.find({left.id, symbols[left.next].id});
    if (it == merges_.end() || it->second.merged_id != top.merged_id) continue;  // stale
    Symbol& right = symbols[left.next];
    right.alive = false;
    left.id = top.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    consider(left.prev);
    consider(top.left);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

// Words this thread encoded lately, with their ids, per tokenizer: text repeats its words, and
// a lookup costs far less than the merges. One cache a thread keeps Encode free of locks.
struct WordCache {
  absl::flat_hash_map<std::string, std::vector<int32_t>> ids;
};
constexpr size_t kWordCacheCapacity = 16384;  // words per tokenizer and thread; then it restarts
constexpr size_t kMaxCachedWordBytes = 64;    // longer words are rare and would crowd it
constexpr size_t kMaxCachedTokenizers = 16;   // per thread; then all restart

void BpeTokenizer::EncodeSegment(std::string_view segment, size_t offset,
                                 std::vector<int32_t>* ids) const {
  if (segment.empty()) return;
  std::vector<std::string> words;
  pre_tokenizer_.Split(segment, offset, &words);
  thread_local absl::flat_hash_map<uint64_t, WordCache> caches;
  if (caches.size() >= kMaxCachedTokenizers && !caches.contains(instance_id_)) caches.clear();
  WordCache& cache = caches[instance_id_];
  for (const std::string& word : words) {
    if (word.size() > kMaxCachedWordBytes) {
      EncodeWord(word, ids);
      continue;
    }
    if (auto it = cache.ids.find(word); it != cache.ids.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      continue;
    }
    const size_t first = ids->size();
    EncodeWord(word, ids);
    if (cache.ids.size() >= kWordCacheCapacity) cache.ids.clear();
    cache.ids.emplace(word, std::vector<int32_t>(ids->begin() + first, ids->end()));
  }
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos && add_bos_ && bos_id_.has_value()) ids.push_back(*bos_id_);
  size_t segment_start = 0;
  size_t position = 0;
  while (position < text.size()) {
    const AddedToken* match = nullptr;
    for (const AddedToken& token : added_by_first_byte_[static_cast<uint8_t>(text[position])]) {
      if (text.substr(position).starts_with(token.content)) {
        match = &token;
        break;
      }
    }
    if (match == nullptr) {
      ++position;
      continue;
    }
    EncodeSegment(text.substr(segment_start, position - segment_start), segment_start, &ids);
    ids.push_back(match->id);
    position += match->content.size();
    segment_start = position;
  }
  EncodeSegment(text.substr(segment_start), segment_start, &ids);
  return ids;
}

std::string BpeTokenizer::TokenBytes(int32_t id, int32_t previous) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return "";
  std::string token = id_to_token_[static_cast<size_t>(id)];
  for (const DecodeStep& step : decode_steps_) {
    switch (step.kind) {
      case DecodeStep::kReplace:
        token = absl::StrReplaceAll(token, {{step.from, step.to}});
        break;
      case DecodeStep::kByteFallback:
        if (std::optional<uint8_t> byte = ByteFallbackValue(token)) {
          token.assign(1, static_cast<char>(*byte));
        }
        break;
      case DecodeStep::kByteLevel: {
        // All chars must be byte-level chars; otherwise the token's own bytes are kept (HF).
        std::string bytes;
        bool mapped = true;
        for (size_t position = 0; position < token.size() && mapped;) {
          const size_t length = Utf8CharLength(std::string_view(token).substr(position));
          std::string_view piece = std::string_view(token).substr(position, length);
          const int byte = NextUtf8(piece).kind == Utf8Step::kValid
                               ? ByteOfByteLevelChar(DecodeCodePoint(piece))
                               : -1;
          mapped = byte >= 0;
          bytes.push_back(static_cast<char>(byte));
          position += length;
        }
        if (mapped) token = std::move(bytes);
        break;
      }
      case DecodeStep::kMetaspace:
        token = absl::StrReplaceAll(token, {{step.from, " "}});
        if (previous < 0 && step.strip_first_space && token.starts_with(' ')) token.erase(0, 1);
        break;
      case DecodeStep::kStrip:
        if (previous < 0 && !step.from.empty()) {
          for (int i = 0; i < step.strip_count && token.starts_with(step.from); ++i) {
            token.erase(0, step.from.size());
          }
        }
        break;
    }
  }
  return token;
}

std::string BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  int32_t previous = -1;
  for (int32_t id : ids) {
    if (skip_special && IsSpecial(id)) continue;
    bytes += TokenBytes(id, previous);
    previous = id;
  }
  std::string text;
  AppendLossyUtf8(bytes, /*final=*/true, &text);
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "tokenizer.json";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(nlohmann::json root, ParseJson(text, path.string()));
  // Type mismatches deep in the file surface as nlohmann exceptions; they end here.
  try {
    ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tokenizer,
                     BpeTokenizer::FromJson(root, path.string()));
    RETURN_IF_ERROR(tokenizer->LoadConfigs(model_dir, root));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir.string(), ": malformed tokenizer files: ", e.what()));
  }
}

std::string StreamDecoder::Push(int32_t id) {
  if (skip_special_ && tokenizer_->IsSpecial(id)) return "";
  pending_ += tokenizer_->TokenBytes(id, previous_);
  previous_ = id;
  std::string text;
  pending_.erase(0, AppendLossyUtf8(pending_, /*final=*/false, &text));
  return text;
}

std::string StreamDecoder::Flush() {
  std::string text;
  AppendLossyUtf8(pending_, /*final=*/true, &text);
  pending_.clear();
  return text;
}

}  // namespace muxserve::model
