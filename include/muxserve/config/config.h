// The daemon's YAML configuration as typed, validated structs. Every error names the file, the
// line and the key, and the daemon refuses to start on any of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"
#include "muxserve/model/model_spec.h"

namespace muxserve::config {

enum class Backend { kAuto, kCpu, kCuda };
enum class SchedulerMode { kMuxserve, kTemporal, kSpatial };
// How spatial mode splits the SMs among models without a models[].sm_share: kMemory, in
// proportion to each model's memory (weights + its KV quota: one engine per model sized by
// memory, as operators start them on a shared GPU); kCompute, in proportion to rate x FLOPs per
// token (an operator who knows the rates).
enum class SpatialSplit { kMemory, kCompute };
// muxserve mode on a GPU, the priority of decode jobs' streams over prefill jobs' (the default
// priority): kNone, all equal; kUniform, every decode stream at the device's greatest;
// kByRate, decode streams ranked by the models' expected rates, the most requested greatest.
enum class DecodePriority { kNone, kUniform, kByRate };
// How jobs get SM partitions on a GPU: kAuto picks green contexts where the driver has them,
// else none; kMps needs an MPS control daemon.
enum class PartitionBackend { kAuto, kNone, kGreen, kMps };

struct ServerConfig {
  std::string grpc_address = "127.0.0.1:50051";
  std::string metrics_address = "127.0.0.1:9400";  // empty: no metrics endpoint
  double shutdown_grace_seconds = 10.0;
  int64_t max_queued_requests = 1024;  // per model; beyond it Submit is RESOURCE_EXHAUSTED
  std::filesystem::path synthetic_dir;  // where synthetic models are written; default
                                        // <config dir>/.cache/synthetic
};

struct RuntimeConfig {
  Backend backend = Backend::kAuto;
  int64_t cpu_threads = 0;  // 0: all cores
  PartitionBackend partitions = PartitionBackend::kAuto;
};

struct KvCacheConfig {
  int64_t memory_bytes = int64_t{256} << 20;  // the pool of one device, shared by its models
  int64_t block_bytes = 16384;                // bytes of one head block (K and V)
};

struct SchedulerConfig {
  SchedulerMode mode = SchedulerMode::kMuxserve;
  int64_t max_prefill_tokens = 2048;  // prompt tokens in one prefill job
  int64_t max_batch_size = 256;       // sequences in one decode job
  // muxserve mode on a GPU: the share of the SMs decode jobs get while a prefill job runs (the
  // prefill job gets the rest); either kind alone gets the whole GPU.
  double decode_sm_share = 0.4;
  // Whether the YAML set decode_sm_share; when not, the daemon takes it from the placement plan.
  bool decode_sm_share_set = false;
  // Where streams share SMs the block scheduler places the blocks of higher priority first. On an
  // H200 with five models, kByRate served 2-15% more than kUniform on the same streams and met
  // SLO scales 5-15 far more often; kUniform had left throughput and TPOT as kNone did
  // (docs/benchmarks.md).
  DecodePriority decode_priority = DecodePriority::kByRate;
  SpatialSplit spatial_split = SpatialSplit::kMemory;
};

struct SyntheticSpec {
  model::ModelSpec spec;
  uint64_t seed = 0;
  // `weights: device`: no safetensors are written; the engine draws the weights at load time
  // (model::Weights::Random). `weights: file` (the default) writes model.safetensors.
  bool device_weights = false;
};

struct ModelConfig {
  std::string name;
  std::filesystem::path path;             // an HF directory; resolved against the config's folder
  std::optional<SyntheticSpec> synthetic;  // exactly one of path / synthetic
  std::optional<DType> dtype;              // defaults to the checkpoint's torch_dtype (CPU: float32)
  double rate = 1.0;                       // expected requests per second (placement, KV quotas)
  double sm_share = 0;  // spatial mode: the share of the GPU's SMs this model owns; 0: by rate
  int64_t max_context = 0;                 // 0: the model's max_position_embeddings
  std::string chat_template;               // "", or chatml | llama3 | llama2 | mistral
  int line = 0;                            // where the entry starts, for later error messages
};

// One bearer token a client sends as "authorization: Bearer <secret>".
struct AuthToken {
  std::string name;    // what logs and errors call it (never the secret); default "tokens[i]"
  std::string secret;  // from `token`, or the trimmed contents of `token_file`
  std::vector<std::string> models;  // the models it may use; empty: every model
};

struct TlsConfig {
  std::filesystem::path cert;       // PEM server certificate chain
  std::filesystem::path key;        // PEM private key
  std::filesystem::path client_ca;  // empty: no client certificates; set: mutual TLS required
};

struct AuthConfig {
  std::vector<AuthToken> tokens;  // empty: the API needs no token
  std::optional<TlsConfig> tls;   // unset: plaintext
};

// What one client may ask for; each refusal is a status naming the limit. 0 turns a limit off.
struct LimitsConfig {
  int64_t max_message_bytes = int64_t{4} << 20;  // one request message (gRPC RESOURCE_EXHAUSTED)
  int64_t max_prompt_tokens = 0;                 // after tokenization; 0: the model's context
  int64_t max_stop_strings = 16;                 // sampling.stop entries
  int64_t max_streams_per_client = 0;            // open Generate/Chat streams of one client
};

// One GPU's capacity as the planner sees it. Defaults: an H100 80GB as measured
// (device/README.md): copy bandwidth 2.98e12 B/s (read + write), bf16 GEMM 790e12 FLOP/s.
struct GpuConfig {
  std::string name = "H100-80GB";
  int64_t memory_bytes = 80'000'000'000;
  int64_t sm_count = 132;
  double bandwidth = 2.98e12;  // bytes per second
  double flops = 790e12;       // dense bf16 FLOP/s
};

// The GPUs the planner places models on: `nodes` machines of `gpus_per_node` identical GPUs.
struct ClusterConfig {
  int64_t nodes = 1;
  int64_t gpus_per_node = 1;
  GpuConfig gpu;
};

// A unit the YAML pins: these GPUs (cluster-wide ids, node * gpus_per_node + local id) serve
// these models.
struct PinnedUnit {
  std::vector<int64_t> gpus;
  std::vector<std::string> models;
  int line = 0;
};

// Inputs of the placement planner. With `units` set the planner keeps that placement and only
// sizes SM shares and KV quotas.
struct PlacementConfig {
  std::filesystem::path cost_table;  // a `muxserve profile` table; empty: roofline estimate
  int64_t prompt_tokens = 161;       // mean prompt and output lengths (ShareGPT, as MuxServe)
  int64_t output_tokens = 337;
  std::vector<PinnedUnit> units;
};

struct Config {
  std::filesystem::path source;  // the YAML file it came from
  ServerConfig server;
  AuthConfig auth;
  LimitsConfig limits;
  RuntimeConfig runtime;
  KvCacheConfig kv_cache;
  SchedulerConfig scheduler;
  std::vector<ModelConfig> models;
  ClusterConfig cluster;
  PlacementConfig placement;
};

// Parses and validates. Unknown keys, wrong types, out-of-range values, duplicate model names,
// missing model directories: INVALID_ARGUMENT "FILE:LINE: key 'models[1].rate': reason".
absl::StatusOr<Config> LoadConfig(const std::filesystem::path& path);
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text,
                                   const std::filesystem::path& origin);

// A byte count: an integer, or a number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB,
// MiB, GiB, TiB (powers of 1024), e.g. "256MiB", "1.5 GiB". Units are case-insensitive.
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

std::string_view BackendName(Backend backend);
std::string_view SchedulerModeName(SchedulerMode mode);
std::string_view SpatialSplitName(SpatialSplit split);
std::string_view DecodePriorityName(DecodePriority priority);
std::string_view PartitionBackendName(PartitionBackend backend);

}  // namespace muxserve::config
