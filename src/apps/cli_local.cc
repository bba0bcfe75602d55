#include "cli_local.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli_table.h"
#include "fmt/core.h"
#include "muxserve/common/dtype.h"
#include "muxserve/config/config.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/synthetic.h"

namespace muxserve::cli {
namespace {

// The synthetic tokenizer's <|endoftext|> and <|im_end|>: a ChatML model stops on either.
constexpr int32_t kSyntheticEndOfText = 256;
constexpr int32_t kSyntheticImEnd = 258;

struct MakeModelFlags {
  std::filesystem::path out;
  int64_t layers = 2;
  int64_t hidden = 128;
  int64_t heads = 4;
  int64_t kv_heads = 4;
  int64_t head_dim = 0;
  int64_t intermediate = 344;
  int64_t vocab = 320;
  int64_t max_position = 2048;
  double rope_theta = 10000.0;
  std::string rope_scaling = "none";
  double rope_factor = 8.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  double rms_norm_eps = 1e-5;
  std::string model_type = "llama";
  bool qkv_bias = false;
  bool tie_embeddings = false;
  std::string dtype = "bfloat16";
  uint64_t seed = 0;
};

int RunMakeModel(const MakeModelFlags& flags) {
  absl::StatusOr<DType> dtype = ParseDType(flags.dtype);
  if (!dtype.ok()) {
    fmt::print(stderr, "error: --dtype: {}\n", std::string(dtype.status().message()));
    return 1;
  }
  if (flags.head_dim == 0 && flags.hidden % flags.heads != 0) {
    fmt::print(stderr, "error: --hidden {} is not a multiple of --heads {}; set --head-dim\n",
               flags.hidden, flags.heads);
    return 1;
  }
  model::SyntheticModelOptions options;
  model::ModelSpec& spec = options.spec;
  spec.model_type = flags.model_type;  // the architecture follows from the family
  spec.vocab_size = flags.vocab;
  spec.hidden_size = flags.hidden;
  spec.intermediate_size = flags.intermediate;
  spec.num_layers = flags.layers;
  spec.num_heads = flags.heads;
  spec.num_kv_heads = flags.kv_heads;
  spec.head_dim = flags.head_dim != 0 ? flags.head_dim : flags.hidden / flags.heads;
  spec.max_position_embeddings = flags.max_position;
  spec.rms_norm_eps = flags.rms_norm_eps;
  spec.rope.theta = flags.rope_theta;
  if (flags.rope_scaling != "none") {
    spec.rope.scaling =
        flags.rope_scaling == "linear" ? model::RopeScaling::kLinear : model::RopeScaling::kLlama3;
    spec.rope.factor = flags.rope_factor;
    spec.rope.low_freq_factor = flags.rope_low_freq_factor;
    spec.rope.high_freq_factor = flags.rope_high_freq_factor;
    spec.rope.original_max_position = flags.rope_original_max_position;
  }
  spec.qkv_bias = flags.qkv_bias;
  spec.tie_word_embeddings = flags.tie_embeddings;
  spec.dtype = *dtype;
  spec.eos_token_ids = {kSyntheticImEnd, kSyntheticEndOfText};
  options.seed = flags.seed;
  options.weight_dtype = *dtype;

  absl::Status status = model::WriteSyntheticModel(flags.out, options);
  if (!status.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(status.message()));
    return 1;
  }
  const int64_t bytes = spec.WeightBytes(*dtype);
  fmt::print("wrote {}\nparameters: {}\nweight bytes: {} ({:.2f} MiB, {})\n", flags.out.string(),
             spec.NumParameters(), bytes, static_cast<double>(bytes) / (1 << 20),
             DTypeName(*dtype));
  return 0;
}

std::string DescribeSource(const config::ModelConfig& model) {
  if (!model.synthetic) return model.path.string();
  const model::ModelSpec& spec = model.synthetic->spec;
  return fmt::format("synthetic (layers {}, hidden {}, heads {}/{}, vocab {}, seed {})",
                     spec.num_layers, spec.hidden_size, spec.num_heads, spec.num_kv_heads,
                     spec.vocab_size, model.synthetic->seed);
}

int RunCheckConfig(const std::filesystem::path& file) {
  absl::StatusOr<config::Config> loaded = config::LoadConfig(file);
  if (!loaded.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(loaded.status().message()));
    return kInvalidConfigExitCode;
  }
  const config::Config& config = *loaded;
  fmt::print("{}: valid, {} model(s)\n", file.string(), config.models.size());
  fmt::print("grpc {}, metrics {}, backend {}, scheduler {}, kv cache {} MiB\n",
             config.server.grpc_address,
             config.server.metrics_address.empty() ? "off" : config.server.metrics_address,
             config::BackendName(config.runtime.backend),
             config::SchedulerModeName(config.scheduler.mode), config.kv_cache.memory_bytes >> 20);
  std::vector<std::vector<std::string>> rows;
  for (const config::ModelConfig& model : config.models) {
    rows.push_back({model.name, DescribeSource(model),
                    model.dtype ? std::string(DTypeName(*model.dtype)) : "checkpoint",
                    fmt::format("{:g}", model.rate),
                    model.max_context > 0 ? std::to_string(model.max_context) : "model",
                    model.chat_template.empty() ? "auto" : model.chat_template});
  }
  PrintTable(stdout, {"NAME", "SOURCE", "DTYPE", "RATE", "MAX_CONTEXT", "CHAT_TEMPLATE"}, rows);
  return 0;
}

}  // namespace

void AddLocalCommands(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<MakeModelFlags>();
  CLI::App* make_model = app.add_subcommand(
      "make-model", "Write a synthetic Llama model directory with seeded random weights");
  make_model->add_option("--out", flags->out, "Directory to write")->required();
  // Sizes of the shape: small enough for the int32 index math of the kernels.
  const CLI::Range positive(int64_t{1}, int64_t{INT32_MAX});
  struct SizeFlag {
    const char* name;
    int64_t* value;
  };
  for (const SizeFlag& size :
       {SizeFlag{"--layers", &flags->layers}, SizeFlag{"--hidden", &flags->hidden},
        SizeFlag{"--heads", &flags->heads}, SizeFlag{"--kv-heads", &flags->kv_heads},
        SizeFlag{"--intermediate", &flags->intermediate},
        SizeFlag{"--max-position", &flags->max_position}}) {
    make_model->add_option(size.name, *size.value)->capture_default_str()->check(positive);
  }
  make_model->add_option("--head-dim", flags->head_dim, "0: hidden / heads")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{INT32_MAX}));
  make_model->add_option("--vocab", flags->vocab)
      ->capture_default_str()
      ->check(CLI::Range(model::kSyntheticTokenizerSize, int64_t{INT32_MAX}));
  make_model->add_option("--rope-theta", flags->rope_theta)
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  make_model->add_option("--model-type", flags->model_type, "config.json model_type")
      ->capture_default_str()
      ->check(CLI::IsMember({"llama", "mistral", "qwen2"}));
  make_model->add_option("--rms-norm-eps", flags->rms_norm_eps)
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  make_model->add_option("--rope-scaling", flags->rope_scaling)
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "linear", "llama3"}));
  make_model->add_option("--rope-factor", flags->rope_factor, "linear and llama3 scaling")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  make_model->add_option("--rope-low-freq-factor", flags->rope_low_freq_factor, "llama3 scaling")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  make_model->add_option("--rope-high-freq-factor", flags->rope_high_freq_factor, "llama3 scaling")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  make_model
      ->add_option("--rope-original-max-position", flags->rope_original_max_position,
                   "llama3 scaling")
      ->capture_default_str()
      ->check(positive);
  make_model->add_flag("--qkv-bias", flags->qkv_bias, "Biases on the Q, K and V projections");
  make_model->add_flag("--tie-embeddings", flags->tie_embeddings, "lm_head shares the embedding");
  make_model->add_option("--dtype", flags->dtype, "Weight dtype")->capture_default_str();
  make_model->add_option("--seed", flags->seed)->capture_default_str();
  make_model->callback([flags, exit_code] { *exit_code = RunMakeModel(*flags); });

  auto file = std::make_shared<std::filesystem::path>();
  CLI::App* check_config =
      app.add_subcommand("check-config", "Validate a muxserved YAML config and summarize it");
  check_config->add_option("file", *file, "The YAML file")->required();
  check_config->callback([file, exit_code] { *exit_code = RunCheckConfig(*file); });
}

}  // namespace muxserve::cli
