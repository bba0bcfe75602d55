// Pieces the CUDA benchmarks share: event timing, FLOP counts and model shapes (step plans over
// contiguous head blocks are engine::UniformStepPlan).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/step_plan.h"
#include "muxserve/engine/uniform_plan.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/runtime/check.h"

namespace muxserve::bench {

constexpr int kWarmup = 3;

// Median and minimum milliseconds of `reps` runs of `body` between events on `stream`, after
// warm-up runs.
struct Timing {
  double median_ms = 0;
  double min_ms = 0;
};

inline absl::StatusOr<Timing> Time(cudaStream_t stream, int reps,
                                   const std::function<absl::Status()>& body) {
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  std::vector<double> ms;
  absl::Status status;
  for (int i = 0; i < kWarmup + reps && status.ok(); ++i) {
    status.Update(CUDA_STATUS(cudaEventRecord(start, stream)));
    status.Update(body());
    status.Update(CUDA_STATUS(cudaEventRecord(stop, stream)));
    status.Update(CUDA_STATUS(cudaEventSynchronize(stop)));
    float elapsed = 0;
    status.Update(CUDA_STATUS(cudaEventElapsedTime(&elapsed, start, stop)));
    if (i >= kWarmup) ms.push_back(elapsed);
  }
  CUDA_LOG_IF_ERROR(cudaEventDestroy(start));
  CUDA_LOG_IF_ERROR(cudaEventDestroy(stop));
  RETURN_IF_ERROR(status);
  std::sort(ms.begin(), ms.end());
  return Timing{.median_ms = ms[ms.size() / 2], .min_ms = ms.front()};
}

inline double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Attention FLOPs of a step: QK^T and PV over the keys each new row sees (causal).
inline double AttentionFlops(const model::ModelSpec& s, const engine::StepPlan& plan) {
  double keys = 0;
  for (const kernels::StepSequence& seq : plan.seqs) {
    for (int i = 0; i < seq.q_len; ++i) keys += seq.context_len - seq.q_len + i + 1;
  }
  return 4.0 * s.num_layers * s.q_size() * keys;
}

// Linear-layer and attention FLOPs of a step (multiply-adds count 2).
inline double StepFlops(const model::ModelSpec& s, const engine::StepPlan& plan) {
  const double h = static_cast<double>(s.hidden_size);
  const double per_token_layer = h * (s.q_size() + 2 * s.kv_size()) + s.q_size() * h +
                                 3 * h * static_cast<double>(s.intermediate_size);
  return 2 * per_token_layer * s.num_layers * plan.num_tokens() +
         2 * h * s.vocab_size * static_cast<double>(plan.logit_rows.size()) +
         AttentionFlops(s, plan);
}

inline std::string Today() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d", std::gmtime(&now));
  return text;
}

// A Llama-family shape with bf16 weights (head_dim = hidden / heads).
inline model::ModelSpec LlamaShape(int64_t layers, int64_t hidden, int64_t heads,
                                   int64_t kv_heads, int64_t intermediate, int64_t vocab) {
  model::ModelSpec spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = vocab;
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = 4096;
  spec.rms_norm_eps = 1e-5;
  spec.dtype = DType::kBFloat16;
  return spec;
}

// Writes a report (making its folders) and says where.
inline absl::Status WriteReport(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  std::printf("\nwrote %s\n", path.c_str());
  return absl::OkStatus();
}

}  // namespace muxserve::bench
