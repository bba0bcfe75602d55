#include "muxserve/model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "muxserve/model/safetensors.h"
#include "muxserve/model/weights.h"
#include "nlohmann/json.hpp"
#include "pre_tokenizer.h"

namespace muxserve::model {
namespace {

constexpr std::array<std::string_view, 3> kSpecialTokens = {"<|endoftext|>", "<|im_start|>",
                                                            "<|im_end|>"};
constexpr int32_t kEndOfTextId = 256;
constexpr int32_t kImEndId = 258;

constexpr std::string_view kChatMLTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Weight scales. Every projection reads an RMS-normalised input (entries ~1), so a std of
// 1/sqrt(fan_in) keeps its outputs ~1 and the residual stream grows gently with depth. The
// final norm makes the last hidden state's RMS ~1 whatever came before, so lm_head rows of std
// kLogitStd/sqrt(hidden) give logits of std ~kLogitStd. With 16, the expected gap between the
// two largest of V Gaussian logits is ~16/sqrt(2 ln V) (~5 at V = 259, ~3.5 at V = 32000): the
// top-1 vs top-2 margin exceeds 0.5 about nine times in ten, and near-ties that rounding could
// flip (margins ~1e-4 in fp32) are rarer than one in 10^4, so greedy decoding picks the same
// tokens however a batch is composed. Untied embeddings have std 1 (rows of RMS 1, like a block's
// output); tied ones are the lm_head and take its scale. Norm weights are 1 + N(0, 0.05) and
// qkv biases N(0, 0.1), small enough to leave these scales as they are.
constexpr double kLogitStd = 16.0;
constexpr double kNormNoiseStd = 0.05;
constexpr double kBiasStd = 0.1;

uint64_t NameHash(const std::string& name) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a
  for (char c : name) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

// Each tensor of a written model draws from its own generator, seeded by the model seed and the
// tensor's name. Not SyntheticTensorSeed's: model files written before it keep their bytes.
std::mt19937_64 GeneratorFor(uint64_t seed, const std::string& name) {
  const uint64_t hash = NameHash(name);
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                         static_cast<uint32_t>(hash), static_cast<uint32_t>(hash >> 32)};
  return std::mt19937_64(sequence);
}

absl::Status FillTensor(const TensorLayout& layout, std::span<std::byte> out, const ModelSpec& spec,
                        uint64_t seed) {
  const WeightInit init = SyntheticWeightInit(layout.name, spec);
  std::mt19937_64 generator = GeneratorFor(seed, layout.name);
  std::normal_distribution<float> normal(static_cast<float>(init.mean),
                                         static_cast<float>(init.std));
  const size_t element_bytes = DTypeSize(layout.dtype);
  const size_t count = out.size() / element_bytes;
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<float> values(std::min(count, kChunk));
  for (size_t begin = 0; begin < count; begin += kChunk) {
    const size_t n = std::min(kChunk, count - begin);
    for (size_t i = 0; i < n; ++i) values[i] = normal(generator);
    ConvertFromFloat(values.data(), n, layout.dtype, out.data() + begin * element_bytes);
  }
  return absl::OkStatus();
}

std::string TokenizerJson() {
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < kSpecialTokens.size(); ++i) {
    added.push_back({{"id", 256 + i},
                     {"content", kSpecialTokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[ByteLevelChars()[byte]] = byte;
  auto byte_level = [](bool add_prefix_space, bool trim_offsets) {
    return nlohmann::ordered_json{{"type", "ByteLevel"},
                                  {"add_prefix_space", add_prefix_space},
                                  {"trim_offsets", trim_offsets},
                                  {"use_regex", true}};
  };
  nlohmann::ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = byte_level(false, true);
  root["post_processor"] = byte_level(false, false);
  root["decoder"] = byte_level(true, true);
  root["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", nullptr},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},
                   {"byte_fallback", false},
                   {"ignore_merges", false},
                   {"vocab", std::move(vocab)},
                   {"merges", nlohmann::ordered_json::array()}};
  return root.dump(2) + "\n";
}

std::string TokenizerConfigJson(const ModelSpec& spec) {
  nlohmann::ordered_json config;
  config["add_bos_token"] = false;
  config["add_eos_token"] = false;
  config["bos_token"] = nullptr;
  config["eos_token"] = kSpecialTokens[2];
  config["pad_token"] = kSpecialTokens[0];
  config["unk_token"] = nullptr;
  config["chat_template"] = kChatMLTemplate;
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = spec.max_position_embeddings;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  return config.dump(2) + "\n";
}

std::string GenerationConfigJson() {
  nlohmann::ordered_json config;
  config["eos_token_id"] = {kImEndId, kEndOfTextId};
  config["pad_token_id"] = kEndOfTextId;
  return config.dump(2) + "\n";
}

}  // namespace

WeightInit SyntheticWeightInit(const std::string& name, const ModelSpec& spec) {
  const double hidden = static_cast<double>(spec.hidden_size);
  if (name == "lm_head.weight") return {0.0, kLogitStd / std::sqrt(hidden)};
  if (name == "model.embed_tokens.weight") {
    return {0.0, spec.tie_word_embeddings ? kLogitStd / std::sqrt(hidden) : 1.0};
  }
  if (absl::EndsWith(name, "norm.weight")) return {1.0, kNormNoiseStd};
  if (absl::EndsWith(name, ".bias")) return {0.0, kBiasStd};
  if (absl::EndsWith(name, "o_proj.weight")) {
    return {0.0, 1.0 / std::sqrt(static_cast<double>(spec.q_size()))};
  }
  if (absl::EndsWith(name, "down_proj.weight")) {
    return {0.0, 1.0 / std::sqrt(static_cast<double>(spec.intermediate_size))};
  }
  return {0.0, 1.0 / std::sqrt(hidden)};  // q, k, v, gate and up projections read hidden
}

uint64_t SyntheticTensorSeed(uint64_t model_seed, const std::string& name) {
  // SplitMix64's finaliser over both inputs: nearby seeds and names give unrelated seeds.
  uint64_t x = model_seed ^ (NameHash(name) + 0x9e3779b97f4a7c15ull);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

absl::Status WriteSyntheticModel(const std::filesystem::path& dir,
                                 const SyntheticModelOptions& options) {
  ModelSpec spec = options.spec;
  if (spec.model_type.empty()) spec.model_type = "llama";
  if (spec.vocab_size < kSyntheticTokenizerSize) {
    return absl::InvalidArgumentError(absl::StrCat("synthetic model: vocab_size ", spec.vocab_size,
                                                   " is smaller than the ", kSyntheticTokenizerSize,
                                                   " tokens of the synthetic tokenizer"));
  }
  // The config describes the files as written: their dtype and the synthetic tokenizer's ids.
  spec.dtype = options.weight_dtype;
  spec.bos_token_ids.clear();
  spec.eos_token_ids = {kImEndId, kEndOfTextId};
  const std::string config_json = ModelSpecToJson(spec);
  // Parsing back validates the shape with config.json's own rules.
  ASSIGN_OR_RETURN(spec, ParseModelSpec(config_json, "synthetic model spec"));

  std::error_code error;
  if (std::filesystem::exists(dir, error) && !std::filesystem::is_directory(dir, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir.string(), ": exists and is not a directory"));
  }
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir.string(), ": cannot create the model directory: ", error.message()));
  }
  RETURN_IF_ERROR(WriteStringToFile(dir / "config.json", config_json));

  if (options.write_weights) {
    std::vector<TensorLayout> layouts;
    for (const ExpectedTensor& tensor : ExpectedTensors(spec)) {
      layouts.push_back({tensor.name, options.weight_dtype, tensor.shape});
    }
    RETURN_IF_ERROR(
        WriteSafetensorsStreaming(dir / "model.safetensors", std::move(layouts),
                                  [&](const TensorLayout& layout, std::span<std::byte> out) {
                                    return FillTensor(layout, out, spec, options.seed);
                                  }));
  }

  RETURN_IF_ERROR(WriteStringToFile(dir / "tokenizer.json", TokenizerJson()));
  RETURN_IF_ERROR(WriteStringToFile(dir / "tokenizer_config.json", TokenizerConfigJson(spec)));
  RETURN_IF_ERROR(WriteStringToFile(dir / "generation_config.json", GenerationConfigJson()));
  return absl::OkStatus();
}

}  // namespace muxserve::model
