#include "muxserve/model/weights.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "muxserve/model/synthetic.h"
#include "nlohmann/json.hpp"

namespace muxserve::model {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The shard file names of model.safetensors.index.json, each a plain name inside the directory.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(
    const std::filesystem::path& index_path) {
  const std::string origin = index_path.string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  ASSIGN_OR_RETURN(nlohmann::json index, ParseJson(text, origin));
  if (!index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": expected a JSON object"));
  }
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": key 'weight_map': missing or not an object"));
  }
  std::map<std::string, std::string> shard_of;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": key 'weight_map.", name, "': expected a file name"));
    }
    std::string file = shard.get<std::string>();
    std::filesystem::path relative(file);
    bool escapes = relative.empty() || relative.is_absolute();
    for (const auto& part : relative) escapes = escapes || part == "..";
    if (escapes) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": key 'weight_map.", name,
                                                     "': shard '", file,
                                                     "' is not a file inside the model directory"));
    }
    shard_of.emplace(name, std::move(file));
  }
  return shard_of;
}

}  // namespace

std::vector<ExpectedTensor> ExpectedTensors(const ModelSpec& spec) {
  const int64_t h = spec.hidden_size;
  const int64_t inter = spec.intermediate_size;
  std::vector<ExpectedTensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", {spec.vocab_size, h}});
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    const std::string layer = absl::StrCat("model.layers.", i, ".");
    tensors.push_back({layer + "input_layernorm.weight", {h}});
    tensors.push_back({layer + "self_attn.q_proj.weight", {spec.q_size(), h}});
    tensors.push_back({layer + "self_attn.k_proj.weight", {spec.kv_size(), h}});
    tensors.push_back({layer + "self_attn.v_proj.weight", {spec.kv_size(), h}});
    if (spec.qkv_bias) {
      tensors.push_back({layer + "self_attn.q_proj.bias", {spec.q_size()}});
      tensors.push_back({layer + "self_attn.k_proj.bias", {spec.kv_size()}});
      tensors.push_back({layer + "self_attn.v_proj.bias", {spec.kv_size()}});
    }
    tensors.push_back({layer + "self_attn.o_proj.weight", {h, spec.q_size()}});
    tensors.push_back({layer + "post_attention_layernorm.weight", {h}});
    tensors.push_back({layer + "mlp.gate_proj.weight", {inter, h}});
    tensors.push_back({layer + "mlp.up_proj.weight", {inter, h}});
    tensors.push_back({layer + "mlp.down_proj.weight", {h, inter}});
  }
  tensors.push_back({"model.norm.weight", {h}});
  if (!spec.tie_word_embeddings) tensors.push_back({"lm_head.weight", {spec.vocab_size, h}});
  return tensors;
}

absl::StatusOr<std::unique_ptr<Weights>> Weights::Load(const std::filesystem::path& model_dir,
                                                       const ModelSpec& spec) {
  auto weights = std::make_unique<Weights>();
  std::map<std::string, std::string> file_of;  // tensor name -> the file it came from

  auto add_file = [&](const std::filesystem::path& path) -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
    for (const auto& [name, info] : file->tensors()) {
      auto [it, inserted] = file_of.emplace(name, path.string());
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' is in both ", it->second, " and ", path.string()));
      }
      weights->index_.emplace(name, &info);
    }
    weights->files_.push_back(std::move(file));
    return absl::OkStatus();
  };

  std::error_code error;
  const std::filesystem::path index_path = model_dir / kIndexFile;
  if (std::filesystem::exists(index_path, error)) {
    ASSIGN_OR_RETURN(auto shard_of, ReadWeightMap(index_path));
    std::set<std::string> shards;
    for (const auto& [name, shard] : shard_of) shards.insert(shard);
    for (const std::string& shard : shards) RETURN_IF_ERROR(add_file(model_dir / shard));
    for (const auto& [name, shard] : shard_of) {
      auto it = file_of.find(name);
      if (it == file_of.end() || it->second != (model_dir / shard).string()) {
        return absl::NotFoundError(absl::StrCat(index_path.string(), ": tensor '", name,
                                                "' is listed in shard ", shard,
                                                " but that file does not hold it"));
      }
    }
  } else if (std::filesystem::exists(model_dir / kSingleFile, error)) {
    RETURN_IF_ERROR(add_file(model_dir / kSingleFile));
  } else {
    return absl::NotFoundError(absl::StrCat(model_dir.string(), ": neither ", kSingleFile, " nor ",
                                            kIndexFile, " exists"));
  }

  for (const ExpectedTensor& expected : ExpectedTensors(spec)) {
    auto it = weights->index_.find(expected.name);
    if (it == weights->index_.end()) {
      return absl::NotFoundError(absl::StrCat(model_dir.string(), ": missing tensor '",
                                              expected.name, "' (expected shape ",
                                              ShapeString(expected.shape), ")"));
    }
    if (it->second->shape != expected.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_of.at(expected.name), ": tensor '", expected.name, "' has shape ",
          ShapeString(it->second->shape), " but the config implies ", ShapeString(expected.shape)));
    }
  }
  return weights;
}

absl::StatusOr<std::unique_ptr<Weights>> Weights::Random(const ModelSpec& spec, uint64_t seed) {
  auto weights = std::make_unique<Weights>();
  for (ExpectedTensor& expected : ExpectedTensors(spec)) {
    for (int64_t dim : expected.shape) {
      if (dim <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("random weights: tensor '", expected.name,
                                                       "' would have shape ",
                                                       ShapeString(expected.shape)));
      }
    }
    const WeightInit init = SyntheticWeightInit(expected.name, spec);
    TensorInfo info{.dtype = DType::kBFloat16,
                    .shape = std::move(expected.shape),
                    .data = {},
                    .random = RandomInit{.seed = SyntheticTensorSeed(seed, expected.name),
                                         .mean = static_cast<float>(init.mean),
                                         .std = static_cast<float>(init.std)}};
    const TensorInfo& stored =
        weights->random_tensors_.emplace(expected.name, std::move(info)).first->second;
    weights->index_.emplace(expected.name, &stored);
  }
  return weights;
}

absl::StatusOr<const TensorInfo*> Weights::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("no tensor named '", name, "'"));
  return it->second;
}

bool Weights::Has(const std::string& name) const { return index_.contains(name); }

int64_t Weights::TotalBytes() const {
  int64_t total = 0;
  for (const auto& [name, info] : index_) {
    total += info->random ? info->NumElements() * static_cast<int64_t>(DTypeSize(info->dtype))
                          : static_cast<int64_t>(info->data.size());
  }
  return total;
}

}  // namespace muxserve::model
