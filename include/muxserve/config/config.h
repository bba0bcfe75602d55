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
};

struct KvCacheConfig {
  int64_t memory_bytes = int64_t{256} << 20;  // the pool of one device, shared by its models
  int64_t block_bytes = 16384;                // bytes of one head block (K and V)
};

struct SchedulerConfig {
  SchedulerMode mode = SchedulerMode::kMuxserve;
  int64_t max_prefill_tokens = 2048;  // prompt tokens in one prefill job
  int64_t max_batch_size = 256;       // sequences in one decode job
};

struct SyntheticSpec {
  model::ModelSpec spec;
  uint64_t seed = 0;
};

struct ModelConfig {
  std::string name;
  std::filesystem::path path;             // an HF directory; resolved against the config's folder
  std::optional<SyntheticSpec> synthetic;  // exactly one of path / synthetic
  std::optional<DType> dtype;              // defaults to the checkpoint's torch_dtype (CPU: float32)
  double rate = 1.0;                       // expected requests per second (placement, KV quotas)
  int64_t max_context = 0;                 // 0: the model's max_position_embeddings
  std::string chat_template;               // "", or chatml | llama3 | llama2 | mistral
  int line = 0;                            // where the entry starts, for later error messages
};

struct Config {
  std::filesystem::path source;  // the YAML file it came from
  ServerConfig server;
  RuntimeConfig runtime;
  KvCacheConfig kv_cache;
  SchedulerConfig scheduler;
  std::vector<ModelConfig> models;
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

}  // namespace muxserve::config
