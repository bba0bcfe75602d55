#include "muxserve/planner/cost_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "muxserve/common/status.h"

namespace muxserve::planner {
namespace {

double AsDouble(int64_t value) { return static_cast<double>(value); }

// Prefill computes logits for the last prompt token only: FlopsPerToken counts lm_head for
// every token, so take it out of all but one per prompt. Attention sees half the prompt on
// average under the causal mask.
double PrefillFlops(const model::ModelSpec& spec, int64_t batch, int64_t prompt_tokens) {
  const double lm_head = 2.0 * AsDouble(spec.vocab_size) * AsDouble(spec.hidden_size);
  const double per_token = spec.FlopsPerToken(prompt_tokens / 2) - lm_head;
  return AsDouble(batch) * (AsDouble(prompt_tokens) * per_token + lm_head);
}

// Index of the last grid point <= x and the weight of the next one; false outside the grid.
bool Bracket(const std::vector<double>& grid, double x, size_t* low, double* weight) {
  constexpr double kSlack = 1e-9;
  if (grid.empty() || x < grid.front() * (1 - kSlack) || x > grid.back() * (1 + kSlack)) {
    return false;
  }
  if (grid.size() == 1) {
    *low = 0;
    *weight = 0;
    return true;
  }
  size_t i = static_cast<size_t>(std::upper_bound(grid.begin(), grid.end(), x) - grid.begin());
  i = std::clamp<size_t>(i, 1, grid.size() - 1);
  *low = i - 1;
  *weight = std::clamp((x - grid[i - 1]) / (grid[i] - grid[i - 1]), 0.0, 1.0);
  return true;
}

absl::Status TableError(const std::string& origin, std::string_view field,
                        std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": field '", AsAbsl(field), "': ", AsAbsl(reason)));
}

}  // namespace

std::string ShapeKey(const ModelShape& shape) {
  const model::ModelSpec& spec = shape.spec;
  return absl::StrCat("L", spec.num_layers, "-H", spec.hidden_size, "-A", spec.num_heads, "-KV",
                      spec.num_kv_heads, "-D", spec.head_dim, "-I", spec.intermediate_size, "-V",
                      spec.vocab_size, "-", AsAbsl(DTypeName(shape.dtype)));
}

double Interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  if (x <= xs.front()) return ys.front();
  if (x >= xs.back()) return ys.back();
  const size_t i = static_cast<size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  const double weight = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
  return ys[i - 1] + weight * (ys[i] - ys[i - 1]);
}

RooflineCostModel::RooflineCostModel(config::GpuConfig gpu, RooflineOptions options)
    : gpu_(std::move(gpu)), options_(std::move(options)) {}

double RooflineCostModel::ComputeRate(double sm_fraction) const {
  return gpu_.flops *
         Interpolate(options_.compute_sm_fractions, options_.compute_peak_fractions, sm_fraction);
}

double RooflineCostModel::BandwidthRate(double sm_fraction) const {
  return gpu_.bandwidth * Interpolate(options_.bandwidth_sm_fractions,
                                      options_.bandwidth_peak_fractions, sm_fraction);
}

// Two ring all-reduces per layer (after attention and after the MLP) of the tokens' hidden
// states.
double RooflineCostModel::AllReduceSeconds(const ModelShape& model, int64_t tokens, int tp) const {
  if (tp <= 1) return 0;
  const double bytes = AsDouble(tokens) * AsDouble(model.spec.hidden_size) *
                       AsDouble(static_cast<int64_t>(DTypeSize(model.dtype)));
  const double one =
      options_.all_reduce_latency_s + 2.0 * (tp - 1) / tp * bytes / options_.interconnect_bandwidth;
  return 2.0 * AsDouble(model.spec.num_layers) * one;
}

double RooflineCostModel::PrefillSeconds(const ModelShape& model, int64_t batch,
                                         int64_t prompt_tokens, const JobPlace& place) const {
  const int64_t tokens = batch * prompt_tokens;
  const double flops = PrefillFlops(model.spec, batch, prompt_tokens) / place.tp;
  const double bytes = (AsDouble(model.spec.WeightBytes(model.dtype)) +
                        AsDouble(tokens) * AsDouble(model.spec.KvBytesPerToken(model.dtype))) /
                       place.tp;
  const double roof =
      std::max(flops / ComputeRate(place.sm_fraction), bytes / BandwidthRate(place.sm_fraction));
  return roof + AllReduceSeconds(model, tokens, place.tp) + options_.step_overhead_s +
         options_.per_sequence_overhead_s * AsDouble(batch);
}

double RooflineCostModel::DecodeSeconds(const ModelShape& model, int64_t batch, int64_t context,
                                        const JobPlace& place) const {
  const double flops = AsDouble(batch) * model.spec.FlopsPerToken(context) / place.tp;
  const double bytes =
      (AsDouble(model.spec.WeightBytes(model.dtype)) +
       AsDouble(batch) * AsDouble(context) * AsDouble(model.spec.KvBytesPerToken(model.dtype))) /
      place.tp;
  const double roof =
      std::max(flops / ComputeRate(place.sm_fraction), bytes / BandwidthRate(place.sm_fraction));
  return roof + AllReduceSeconds(model, batch, place.tp) + options_.step_overhead_s +
         options_.per_sequence_overhead_s * AsDouble(batch);
}

std::string RooflineCostModel::Describe() const {
  return absl::StrFormat(
      "roofline ESTIMATE (no profiled table): %s, %.3g TFLOP/s, %.3g TB/s, %d SMs, measured "
      "SM-share curves of an H100",
      gpu_.name, gpu_.flops / 1e12, gpu_.bandwidth / 1e12, gpu_.sm_count);
}

TableCostModel::TableCostModel(std::string origin, config::GpuConfig gpu)
    : origin_(std::move(origin)), roofline_(std::move(gpu)) {}

absl::StatusOr<std::unique_ptr<TableCostModel>> TableCostModel::Load(
    const std::filesystem::path& path, config::GpuConfig gpu) {
  ASSIGN_OR_RETURN(CostTable table, LoadCostTable(path));
  return FromTable(std::move(table), path.string(), std::move(gpu));
}

absl::StatusOr<std::unique_ptr<TableCostModel>> TableCostModel::Parse(const std::string& json_text,
                                                                      const std::string& origin,
                                                                      config::GpuConfig gpu) {
  ASSIGN_OR_RETURN(CostTable table, ParseCostTable(json_text, origin));
  return FromTable(std::move(table), origin, std::move(gpu));
}

absl::StatusOr<std::unique_ptr<TableCostModel>> TableCostModel::FromTable(
    CostTable table, const std::string& origin, config::GpuConfig gpu) {
  if (table.gpu != gpu.name) {
    return TableError(origin, "gpu",
                      absl::StrCat("measured on '", table.gpu, "' but the cluster's GPU is '",
                                   gpu.name, "' (cluster.gpu.name)"));
  }
  std::unique_ptr<TableCostModel> model(new TableCostModel(origin, std::move(gpu)));
  for (TableGrid& entry : table.grids) {
    model->grids_.emplace(GridKey{entry.model, entry.tp, entry.phase}, std::move(entry.grid));
  }
  return model;
}

double TableCostModel::Lookup(const GridKey& key, double sm_fraction, double batch,
                              double tokens) const {
  auto it = grids_.find(key);
  if (it == grids_.end()) return -1;
  const CostGrid& grid = it->second;
  size_t s = 0, b = 0, t = 0;
  double ws = 0, wb = 0, wt = 0;
  if (!Bracket(grid.sm_fractions, sm_fraction, &s, &ws) || !Bracket(grid.batches, batch, &b, &wb) ||
      !Bracket(grid.tokens, tokens, &t, &wt)) {
    return -1;
  }
  const size_t nb = grid.batches.size(), nt = grid.tokens.size();
  auto at = [&](size_t si, size_t bi, size_t ti) {
    si = std::min(si, grid.sm_fractions.size() - 1);
    bi = std::min(bi, nb - 1);
    ti = std::min(ti, nt - 1);
    return grid.ms[(si * nb + bi) * nt + ti];
  };
  double value = 0;
  for (int ds = 0; ds < 2; ++ds) {
    for (int db = 0; db < 2; ++db) {
      for (int dt = 0; dt < 2; ++dt) {
        const double weight = (ds ? ws : 1 - ws) * (db ? wb : 1 - wb) * (dt ? wt : 1 - wt);
        if (weight > 0) value += weight * at(s + ds, b + db, t + dt);
      }
    }
  }
  return value;
}

double TableCostModel::PrefillSeconds(const ModelShape& model, int64_t batch, int64_t prompt_tokens,
                                      const JobPlace& place) const {
  const double ms = Lookup({ShapeKey(model), place.tp, "prefill"}, place.sm_fraction,
                           AsDouble(batch), AsDouble(prompt_tokens));
  if (ms > 0) return ms / 1e3;
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  return roofline_.PrefillSeconds(model, batch, prompt_tokens, place);
}

double TableCostModel::DecodeSeconds(const ModelShape& model, int64_t batch, int64_t context,
                                     const JobPlace& place) const {
  const double ms = Lookup({ShapeKey(model), place.tp, "decode"}, place.sm_fraction,
                           AsDouble(batch), AsDouble(context));
  if (ms > 0) return ms / 1e3;
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  return roofline_.DecodeSeconds(model, batch, context, place);
}

std::string TableCostModel::Describe() const {
  const int64_t count = fallbacks();
  if (count == 0) return absl::StrCat("profiled table ", origin_, " (", grids_.size(), " grids)");
  return absl::StrCat("profiled table ", origin_, " (", grids_.size(), " grids); ", count,
                      " lookups fell outside it and used the roofline ESTIMATE");
}

}  // namespace muxserve::planner
