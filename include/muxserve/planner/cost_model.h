// How long one job takes: a prefill job (a batch of prompts) or a decode step (one token for
// every sequence of a batch), for one model on an SM share of a tensor-parallel mesh. The planner
// asks only these two questions; docs/planner.md describes both implementations and the table
// format that `muxserve profile` writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"
#include "muxserve/config/config.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/planner/cost_table.h"

namespace muxserve::planner {

// One model as the cost model sees it: its shape and the dtype of its weights and KV cache.
struct ModelShape {
  model::ModelSpec spec;
  DType dtype = DType::kBFloat16;
};

// "L32-H4096-A32-KV32-D128-I11008-V32000-bfloat16": what a profiled table is keyed by, so every
// model of the same shape shares one table.
std::string ShapeKey(const ModelShape& shape);

// What a job runs on: a fraction of each GPU's SMs on a mesh of `tp` GPUs (tensor parallel).
struct JobPlace {
  double sm_fraction = 1.0;  // (0, 1]
  int tp = 1;                // 1, 2, 4 or 8
};

class CostModel {
 public:
  virtual ~CostModel() = default;
  // Seconds for one prefill job over `batch` prompts of `prompt_tokens` tokens each.
  virtual double PrefillSeconds(const ModelShape& model, int64_t batch, int64_t prompt_tokens,
                                const JobPlace& place) const = 0;
  // Seconds for one decode step of `batch` sequences whose contexts hold `context` tokens.
  virtual double DecodeSeconds(const ModelShape& model, int64_t batch, int64_t context,
                               const JobPlace& place) const = 0;
  // One line for reports: where the numbers come from, and whether they are estimates.
  virtual std::string Describe() const = 0;
};

// Interpolates `ys` at `x` over increasing `xs`, clamping outside the range.
double Interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x);

// Tunables of the roofline estimate; defaults are H100 SXM figures (see docs/planner.md).
struct RooflineOptions {
  // Fraction of the GPU's SMs -> fraction of `gpu.flops` a large bf16 GEMM reaches (measured on
  // an H100 with green contexts: 112, 199, 355, 582, 856 TFLOP/s at 16, 32, 64, 128, 132 SMs,
  // against 790 TFLOP/s for the whole card through the default context).
  std::vector<double> compute_sm_fractions = {0.0,        16.0 / 132,  32.0 / 132,
                                              64.0 / 132, 128.0 / 132, 1.0};
  std::vector<double> compute_peak_fractions = {0.0,         112.0 / 790, 199.0 / 790,
                                                355.0 / 790, 582.0 / 790, 1.0};
  // Fraction of the SMs -> fraction of `gpu.bandwidth` a weight-streaming GEMV reaches (measured:
  // 1.08, 1.98, 2.72, 2.76 TB/s at 16, 32, 64, 128 SMs against 2.98 TB/s copy bandwidth): decode
  // saturates memory at about half the SMs.
  std::vector<double> bandwidth_sm_fractions = {0.0,        16.0 / 132,  32.0 / 132,
                                                64.0 / 132, 128.0 / 132, 1.0};
  std::vector<double> bandwidth_peak_fractions = {0.0,         1.08 / 2.98, 1.98 / 2.98,
                                                  2.72 / 2.98, 2.76 / 2.98, 2.76 / 2.98};
  // Host and launch cost of one step (CUDA-graph launch, sampling, scheduling), and per sequence.
  double step_overhead_s = 300e-6;
  double per_sequence_overhead_s = 2e-6;
  // NVLink all-reduce: bus bandwidth per GPU and latency of one all-reduce (two per layer).
  double interconnect_bandwidth = 450e9;
  double all_reduce_latency_s = 10e-6;
};

// max(FLOPs / reachable FLOP/s, bytes / reachable bandwidth) per job, plus overheads. Sizes come
// from ModelSpec: weight bytes, FLOPs per token (attention included), KV bytes per token (GQA).
class RooflineCostModel final : public CostModel {
 public:
  RooflineCostModel(config::GpuConfig gpu, RooflineOptions options = {});
  double PrefillSeconds(const ModelShape& model, int64_t batch, int64_t prompt_tokens,
                        const JobPlace& place) const override;
  double DecodeSeconds(const ModelShape& model, int64_t batch, int64_t context,
                       const JobPlace& place) const override;
  std::string Describe() const override;

 private:
  double ComputeRate(double sm_fraction) const;    // FLOP/s of one GPU
  double BandwidthRate(double sm_fraction) const;  // bytes/s of one GPU
  double AllReduceSeconds(const ModelShape& model, int64_t tokens, int tp) const;

  config::GpuConfig gpu_;
  RooflineOptions options_;
};

// Interpolates a profiled table (docs/planner.md: "Cost tables"), linear in SM share, batch and
// tokens; outside a grid, or for a shape or mesh size it lacks, it asks the roofline model and
// counts the fallback so reports can say that those numbers are estimates.
class TableCostModel final : public CostModel {
 public:
  // Reads the JSON table; errors name the file and the field.
  static absl::StatusOr<std::unique_ptr<TableCostModel>> Load(const std::filesystem::path& path,
                                                              config::GpuConfig gpu);
  static absl::StatusOr<std::unique_ptr<TableCostModel>> Parse(const std::string& json_text,
                                                               const std::string& origin,
                                                               config::GpuConfig gpu);
  // A parsed table; `origin` names it in errors and in Describe().
  static absl::StatusOr<std::unique_ptr<TableCostModel>> FromTable(CostTable table,
                                                                   const std::string& origin,
                                                                   config::GpuConfig gpu);

  double PrefillSeconds(const ModelShape& model, int64_t batch, int64_t prompt_tokens,
                        const JobPlace& place) const override;
  double DecodeSeconds(const ModelShape& model, int64_t batch, int64_t context,
                       const JobPlace& place) const override;
  std::string Describe() const override;
  int64_t fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }

 private:
  // Key: shape key, tp, "prefill" | "decode".
  using GridKey = std::tuple<std::string, int, std::string>;
  TableCostModel(std::string origin, config::GpuConfig gpu);
  // Milliseconds, or a negative number when the point is outside the table.
  double Lookup(const GridKey& key, double sm_fraction, double batch, double tokens) const;

  std::string origin_;
  RooflineCostModel roofline_;
  std::map<GridKey, CostGrid> grids_;
  mutable std::atomic<int64_t> fallbacks_{0};
};

}  // namespace muxserve::planner
