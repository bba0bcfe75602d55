// `muxserve profile`: measures each model's prefill job and decode step latency on a grid of SM
// share x batch x tokens and writes the cost table the planner reads (planner/cost_table.h,
// docs/planner.md "Cost tables"), plus the slowdown of one model's decode steps while another
// model's prefill runs on the other SMs. Models run with random weights of their shape, through
// the engine's Transformer and lanes as the daemon runs them (on a GPU: CUDA backend, green
// partitions, decode graphs; else the CPU backend on the whole machine).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/cost_table.h"

namespace muxserve::profiler {

// The table key of tables measured on the CPU backend: they are never mistaken for a GPU's.
inline constexpr char kCpuTableGpu[] = "cpu";

// Where a run is, for a progress bar.
struct Progress {
  std::string model{};
  std::string phase{};  // "load", "decode", "prefill", "interference"
  int done = 0;         // points of this model measured (or given up) so far
  int total = 0;
  double elapsed_seconds = 0;  // since this model started
};

struct ProfileOptions {
  // kAuto: the CUDA backend when a device is visible, else the CPU backend.
  config::Backend backend = config::Backend::kAuto;
  // How shares of the SMs are made on a GPU: kAuto takes green contexts where the driver has
  // them, else none (then only the whole GPU is measured).
  config::PartitionBackend partitions = config::PartitionBackend::kAuto;
  int device = 0;                   // CUDA runtime ordinal
  std::vector<std::string> models;  // names from the config; empty: every model
  // The grid. The CPU backend measures the whole machine (share 1) only.
  // What the planner looks up (its shares from 1/8 up, decode batches up to the default
  // max_batch_size): points outside the grid fall back to the roofline estimate.
  std::vector<double> sm_fractions = {0.125, 0.25, 0.5, 1.0};
  std::vector<int64_t> decode_batches = {1, 8, 32, 128, 256};
  std::vector<int64_t> prefill_batches = {1, 2, 4, 8};
  std::vector<int64_t> tokens = {128, 512, 2048};  // decode contexts and prompt lengths
  // Wall time per model (loading, both grids, its interference runs); points that would not
  // fit are left out, and the grid is marked incomplete.
  double max_seconds_per_model = 120;
  // Timed runs per point after warm-up: as many as the time left allows, between 3 (or this,
  // when smaller) and this.
  int max_repetitions = 10;
  bool force = false;  // measure again what the table already holds
  bool interference = true;
  std::function<void(const Progress&)> on_progress;  // called from the profiling thread
};

struct ModelResult {
  std::string name{};
  std::string shape{};  // planner::ShapeKey
  double seconds = 0;
  std::vector<std::string> notes{};  // per phase: measured, cached, or cut short and why
};

struct ProfileResult {
  std::string gpu{};     // the table's `gpu`: cluster.gpu.name, or kCpuTableGpu
  std::string device{};  // what ran the steps, e.g. "NVIDIA H200 (132 SMs), green partitions"
  std::vector<ModelResult> models{};
  std::vector<std::string> notes{};  // for the whole run (shares that were not measured, ...)
};

// INVALID_ARGUMENT naming the option by its `muxserve profile` flag when a grid value or limit
// is out of range (shares in (0, 1], batches >= 1, tokens >= 2, lists non-empty and increasing,
// a positive time limit, at least one repetition).
[[nodiscard]] absl::Status ValidateOptions(const ProfileOptions& options);

// Measures the models of `config` into `table`: every (shape, tp 1, phase) grid it lacks, or
// holds incomplete (all of them with `force`), and the interference of each model with the
// first one. `table->gpu` must be empty or the key of this run (FAILED_PRECONDITION
// otherwise). Errors name the model and what failed; what was measured before stays in
// `table`.
absl::StatusOr<ProfileResult> Profile(const config::Config& config, const ProfileOptions& options,
                                      planner::CostTable* table);

// Profile() merged into the table at `path` (made when missing) and written back, also when a
// later model failed after earlier ones were measured.
absl::StatusOr<ProfileResult> ProfileToFile(const config::Config& config,
                                            const ProfileOptions& options,
                                            const std::filesystem::path& path);

}  // namespace muxserve::profiler
