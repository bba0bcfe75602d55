#include "muxserve/profiler/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "device.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/uniform_plan.h"
#include "muxserve/model/weights.h"
#include "muxserve/planner/cost_model.h"
#include "muxserve/planner/placement.h"
#include "muxserve/runtime/device.h"

namespace muxserve::profiler {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int kMinRepetitions = 3;
// Decode: the first run of a shape tunes its GEMMs, the second captures its CUDA graph, the
// third is the first replay; what is timed after is what the engine's steady state runs.
constexpr int kDecodeWarmup = 3;
constexpr int kPrefillWarmup = 1;
// Share of a model's time kept for its interference runs while its grids are measured.
constexpr double kInterferenceShare = 0.15;

double MillisecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string Today() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d", &utc);
  return text;
}

// The wall time one model may take.
class Budget {
 public:
  explicit Budget(double seconds) : seconds_(seconds), start_(SteadyClock::now()) {}
  double seconds() const { return seconds_; }
  double Elapsed() const { return MillisecondsSince(start_) / 1e3; }
  // Seconds left until `until` seconds after the start.
  double Left(double until) const { return until - Elapsed(); }

 private:
  double seconds_;
  SteadyClock::time_point start_;
};

// One model on the device: a prefill and a decode lane over one KV pool, as in a unit.
struct LoadedModel {
  std::string name;
  std::string shape;
  model::ModelSpec spec;
  std::unique_ptr<Lane> prefill;
  std::unique_ptr<Lane> decode;
  engine::Buffer pool;
  kernels::PagedKv kv{};
  int64_t pool_blocks = 0;
  int64_t needed_blocks = 0;  // what the largest point needs without reusing blocks
};

enum class Phase { kDecode, kPrefill };

const char* PhaseName(Phase phase) { return phase == Phase::kDecode ? "decode" : "prefill"; }

std::string Numbers(const std::vector<double>& values) {
  return absl::StrJoin(values, ", ", [](std::string* out, double value) {
    absl::StrAppend(out, absl::StrFormat("%.4g", value));
  });
}

absl::Status CheckAxis(std::string_view name, const std::vector<int64_t>& values) {
  if (values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(name), ": give at least one value"));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < 1 || (i > 0 && values[i] <= values[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(name), ": expected increasing whole numbers >= 1, got ",
                       absl::StrJoin(values, ",")));
    }
  }
  return absl::OkStatus();
}

// One run of Profile(): the device, the table and what each model has left.
class Run {
 public:
  Run(const config::Config& config, const ProfileOptions& options, Device& device,
      planner::CostTable& table)
      : config_(config), options_(options), device_(device), table_(table) {}

  // Profiles `models` (indices into the config's models), the first one also as every other's
  // interference partner.
  absl::Status ProfileModels(const planner::PlacementProblem& problem,
                             const std::vector<int>& models, ProfileResult& result);

 private:
  // The model being profiled, for progress and notes.
  struct Current {
    ModelResult* result = nullptr;
    std::unique_ptr<Budget> budget;
    int done = 0;
    int total = 0;
  };

  absl::StatusOr<std::unique_ptr<LoadedModel>> Load(const planner::PlannerModel& model,
                                                    uint64_t seed);
  bool NeedsGrid(const std::string& shape, Phase phase) const;
  int GridPoints(Phase phase) const;
  // The interference runs of (decoder, prefiller) that the table lacks.
  std::vector<const Place*> MissingInterference(const std::string& decode_shape,
                                                const std::string& prefill_shape) const;
  // Measures one phase's grid until `until` seconds after the model's start.
  absl::Status MeasureGrid(LoadedModel& model, Phase phase, double until);
  absl::Status MeasureInterference(LoadedModel& decoder, LoadedModel& prefiller,
                                   const std::vector<const Place*>& places);
  // Median milliseconds of `step` after `warmup` runs, with as many timed runs as the time left
  // until `until` gives each of the `points_left` points; nullopt when it ran out first.
  absl::StatusOr<std::optional<double>> TimeSteps(const std::function<absl::Status()>& step,
                                                  int warmup, int points_left, double until);
  void Report(const std::string& phase);
  // "3" or "3 to 10": the timed runs of the points of the last grid.
  std::string RepsUsed() const;
  std::string Source(int64_t aliased_points) const;

  const config::Config& config_;
  const ProfileOptions& options_;
  Device& device_;
  planner::CostTable& table_;
  Current current_;
  int min_reps_used_ = 0;
  int max_reps_used_ = 0;
  std::mt19937 rng_{1};
};

void Run::Report(const std::string& phase) {
  if (!options_.on_progress) return;
  options_.on_progress({.model = current_.result->name,
                        .phase = phase,
                        .done = current_.done,
                        .total = current_.total,
                        .elapsed_seconds = current_.budget->Elapsed()});
}

bool Run::NeedsGrid(const std::string& shape, Phase phase) const {
  const planner::TableGrid* grid = table_.FindGrid(shape, 1, PhaseName(phase));
  return options_.force || grid == nullptr || !grid->complete;
}

int Run::GridPoints(Phase phase) const {
  const size_t batches =
      phase == Phase::kDecode ? options_.decode_batches.size() : options_.prefill_batches.size();
  return static_cast<int>(device_.places().size() * batches * options_.tokens.size());
}

std::vector<const Place*> Run::MissingInterference(const std::string& decode_shape,
                                                   const std::string& prefill_shape) const {
  std::vector<const Place*> missing;
  if (!options_.interference || !device_.partitioned()) return missing;
  for (const Place& place : device_.places()) {
    if (place.rest == nullptr) continue;
    if (options_.force ||
        table_.FindInterference(decode_shape, prefill_shape, place.sm_fraction) == nullptr) {
      missing.push_back(&place);
    }
  }
  return missing;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> Run::Load(const planner::PlannerModel& model,
                                                       uint64_t seed) {
  auto loaded = std::make_unique<LoadedModel>();
  loaded->name = model.name;
  loaded->shape = planner::ShapeKey(model.shape);
  loaded->spec = model.shape.spec;
  const model::ModelSpec& spec = loaded->spec;
  const int64_t max_tokens = options_.tokens.back();
  const int64_t max_prefill = options_.prefill_batches.back();
  const int64_t max_decode = options_.decode_batches.back();
  const int64_t block_bytes = config_.kv_cache.block_bytes;
  const int64_t tokens_per_block =
      block_bytes / (2 * spec.head_dim * static_cast<int64_t>(DTypeSize(device_.dtype())));
  if (tokens_per_block < 1) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim ", spec.head_dim,
                                                   " does not fit a KV block of ", block_bytes,
                                                   " bytes (kv_cache.block_bytes)"));
  }
  // Shapes are what is measured: random weights, drawn on the backend.
  ASSIGN_OR_RETURN(std::unique_ptr<model::Weights> weights, model::Weights::Random(spec, seed));
  ASSIGN_OR_RETURN(loaded->prefill, device_.MakeLane(spec, weights.get(), nullptr,
                                                     max_prefill * max_tokens, max_prefill));
  ASSIGN_OR_RETURN(loaded->decode,
                   device_.MakeLane(spec, nullptr, loaded->prefill.get(), max_decode, max_decode));

  const int max_context = static_cast<int>(max_tokens);
  loaded->needed_blocks = std::max(
      engine::UniformPlanBlocks(spec, tokens_per_block, static_cast<int>(max_decode), max_context),
      engine::UniformPlanBlocks(spec, tokens_per_block, static_cast<int>(max_prefill),
                                max_context));
  // The pool is what the config gives a unit (and what the device has free): larger points
  // reuse blocks rather than fail.
  ASSIGN_OR_RETURN(const int64_t free_bytes, device_.FreeBytes());
  const int64_t cap_bytes =
      std::min(config_.kv_cache.memory_bytes, static_cast<int64_t>(0.9 * free_bytes));
  loaded->pool_blocks = std::min(loaded->needed_blocks, cap_bytes / block_bytes);
  if (loaded->pool_blocks < spec.num_layers * spec.num_kv_heads) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a KV pool of ", cap_bytes,
        " bytes (kv_cache.memory, or the device's free memory) "
        "holds less than one block of tokens: ",
        spec.num_layers * spec.num_kv_heads, " head blocks of ", block_bytes, " bytes"));
  }
  ASSIGN_OR_RETURN(loaded->pool, device_.AllocateZeroed(loaded->pool_blocks * block_bytes));
  loaded->kv = {.pool = loaded->pool.get(),
                .block_bytes = block_bytes,
                .tokens_per_block = tokens_per_block,
                .head_dim = spec.head_dim,
                .num_layers = spec.num_layers,
                .num_kv_heads = spec.num_kv_heads};
  return loaded;
}

absl::StatusOr<std::optional<double>> Run::TimeSteps(const std::function<absl::Status()>& step,
                                                     int warmup, int points_left, double until) {
  const Budget& budget = *current_.budget;
  if (budget.Left(until) <= 0) return std::nullopt;
  double last_ms = 0;
  for (int i = 0; i < warmup; ++i) {
    const auto start = SteadyClock::now();
    RETURN_IF_ERROR(step());
    last_ms = MillisecondsSince(start);
    if (budget.Left(until) <= 0) return std::nullopt;
  }
  const int min_reps = std::min(kMinRepetitions, options_.max_repetitions);
  const double left_ms = budget.Left(until) * 1e3;
  if (left_ms < min_reps * last_ms) return std::nullopt;
  const double share_ms = left_ms / std::max(points_left, 1);
  const int reps =
      static_cast<int>(std::clamp(share_ms / std::max(last_ms, 1e-3), static_cast<double>(min_reps),
                                  static_cast<double>(options_.max_repetitions)));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto start = SteadyClock::now();
    RETURN_IF_ERROR(step());
    ms.push_back(std::max(MillisecondsSince(start), 1e-6));
    if (static_cast<int>(ms.size()) >= min_reps && budget.Left(until) <= 0) break;
  }
  const int used = static_cast<int>(ms.size());
  min_reps_used_ = min_reps_used_ == 0 ? used : std::min(min_reps_used_, used);
  max_reps_used_ = std::max(max_reps_used_, used);
  return Median(std::move(ms));
}

std::string Run::RepsUsed() const {
  if (min_reps_used_ == max_reps_used_) return absl::StrCat(min_reps_used_);
  return absl::StrCat(min_reps_used_, " to ", max_reps_used_);
}

std::string Run::Source(int64_t aliased_points) const {
  std::string source = absl::StrCat(device_.description(), "; median of ", RepsUsed(),
                                    " timed steps after warm-up; ", Today());
  if (aliased_points > 0) {
    absl::StrAppend(&source, "; ", aliased_points,
                    " point(s) larger than kv_cache.memory reuse KV blocks");
  }
  return source;
}

absl::Status Run::MeasureGrid(LoadedModel& model, Phase phase, double until) {
  const std::string phase_name = PhaseName(phase);
  const bool decode = phase == Phase::kDecode;
  const std::vector<int64_t>& batches = decode ? options_.decode_batches : options_.prefill_batches;
  const std::vector<int64_t>& tokens = options_.tokens;
  const std::vector<Place>& places = device_.places();
  const int total = GridPoints(phase);
  min_reps_used_ = max_reps_used_ = 0;
  // Largest share first, small batches first: a grid cut short keeps the slices it finished, or,
  // cut within the whole device's slice, the batches it finished there.
  std::vector<std::vector<double>> slices;  // by measured place, from the largest
  std::vector<double> partial;              // the slice the time ran out in
  int points_left = total;
  int64_t aliased = 0;
  bool cut = false;
  for (size_t p = places.size(); p-- > 0 && !cut;) {
    const Place& place = places[p];
    std::vector<double> slice;
    for (int64_t batch : batches) {
      for (int64_t count : tokens) {
        const int seqs = static_cast<int>(batch);
        const int context = static_cast<int>(count);
        if (engine::UniformPlanBlocks(model.spec, model.kv.tokens_per_block, seqs, context) >
            model.pool_blocks) {
          ++aliased;
        }
        const engine::StepPlan plan =
            decode ? engine::UniformStepPlan(model.spec, model.kv.tokens_per_block, seqs, 1,
                                             context - 1, rng_, 0, model.pool_blocks)
                   : engine::UniformStepPlan(model.spec, model.kv.tokens_per_block, seqs, context,
                                             0, rng_, 0, model.pool_blocks);
        Lane& lane = decode ? *model.decode : *model.prefill;
        absl::StatusOr<std::optional<double>> ms =
            TimeSteps([&] { return lane.Step(place.partition, plan, model.kv); },
                      decode ? kDecodeWarmup : kPrefillWarmup, points_left, until);
        if (!ms.ok()) {
          return Annotate(ms.status(), absl::StrCat(phase_name, " step of batch ", batch, " x ",
                                                    count, " tokens on ", place.label));
        }
        if (!ms->has_value()) {
          cut = true;
          break;
        }
        slice.push_back(**ms);
        --points_left;
        ++current_.done;
        Report(phase_name);
      }
      if (cut) break;
    }
    if (cut) {
      partial = std::move(slice);
    } else {
      slices.push_back(std::move(slice));
    }
  }
  current_.done += points_left;  // given up: the bar still ends full

  ModelResult& result = *current_.result;
  size_t kept_batches = batches.size();
  if (slices.empty()) {
    kept_batches = partial.size() / tokens.size();
    if (kept_batches == 0) {
      result.notes.push_back(
          absl::StrFormat("%s: the %.3g s budget ran out after %d of %d points; nothing kept",
                          phase_name, current_.budget->seconds(), total - points_left, total));
      return absl::OkStatus();
    }
    partial.resize(kept_batches * tokens.size());
    slices.push_back(std::move(partial));
  }
  planner::TableGrid grid{.model = model.shape, .tp = 1, .phase = phase_name};
  std::reverse(slices.begin(), slices.end());
  const size_t first_place = places.size() - slices.size();
  for (size_t p = first_place; p < places.size(); ++p) {
    grid.grid.sm_fractions.push_back(places[p].sm_fraction);
  }
  for (size_t b = 0; b < kept_batches; ++b) {
    grid.grid.batches.push_back(static_cast<double>(batches[b]));
  }
  for (int64_t count : tokens) grid.grid.tokens.push_back(static_cast<double>(count));
  for (const std::vector<double>& slice : slices) {
    grid.grid.ms.insert(grid.grid.ms.end(), slice.begin(), slice.end());
  }
  grid.complete = !cut;
  grid.source = Source(aliased);
  if (cut) {
    result.notes.push_back(absl::StrFormat(
        "%s: the %.3g s budget ran out after %d of %d points; kept SM shares %s, batches %s "
        "(marked incomplete: the next run measures it again)",
        phase_name, current_.budget->seconds(), total - points_left, total,
        Numbers(grid.grid.sm_fractions), Numbers(grid.grid.batches)));
  } else {
    result.notes.push_back(absl::StrCat(phase_name, ": ", total, " points at SM shares ",
                                        Numbers(grid.grid.sm_fractions), ", ", RepsUsed(),
                                        " timed runs each"));
  }
  if (aliased > 0) {
    result.notes.push_back(absl::StrFormat(
        "%s: %d point(s) reuse KV blocks: kv_cache.memory (or free memory) holds %d of the %d "
        "head blocks the largest needs",
        phase_name, aliased, model.pool_blocks, model.needed_blocks));
  }
  table_.PutGrid(std::move(grid));
  return absl::OkStatus();
}

absl::Status Run::MeasureInterference(LoadedModel& decoder, LoadedModel& prefiller,
                                      const std::vector<const Place*>& places) {
  // A mid-grid decode step (the grid's middle batch and context) beside the largest prompt.
  const int64_t batch = options_.decode_batches[options_.decode_batches.size() / 2];
  const int64_t context = options_.tokens[options_.tokens.size() / 2];
  const int64_t prompt = options_.tokens.back();
  const int64_t prompts = options_.prefill_batches.front();
  const engine::StepPlan decode_plan =
      engine::UniformStepPlan(decoder.spec, decoder.kv.tokens_per_block, static_cast<int>(batch), 1,
                              static_cast<int>(context) - 1, rng_, 0, decoder.pool_blocks);
  const engine::StepPlan prefill_plan = engine::UniformStepPlan(
      prefiller.spec, prefiller.kv.tokens_per_block, static_cast<int>(prompts),
      static_cast<int>(prompt), 0, rng_, 0, prefiller.pool_blocks);
  ModelResult& result = *current_.result;
  int measured = 0;
  for (size_t i = 0; i < places.size(); ++i) {
    const Place& place = *places[i];
    const int points_left = static_cast<int>(2 * (places.size() - i));
    auto decode_step = [&] {
      return decoder.decode->Step(place.partition, decode_plan, decoder.kv);
    };
    const std::string what = absl::StrCat("interference of ", decoder.name, "'s decode on ",
                                          place.label, " with ", prefiller.name, "'s prefill");
    absl::StatusOr<std::optional<double>> alone =
        TimeSteps(decode_step, kDecodeWarmup, points_left, current_.budget->seconds());
    if (!alone.ok()) return Annotate(alone.status(), what);
    if (!alone->has_value()) break;

    // The prefill runs back to back on the rest of the SMs while the decode steps are timed.
    std::atomic<bool> stop{false};
    std::atomic<bool> started{false};
    absl::Status prefill_status;
    std::thread prefill([&] {
      while (!stop.load() && prefill_status.ok()) {
        started.store(true);
        prefill_status = prefiller.prefill->Step(place.rest, prefill_plan, prefiller.kv);
      }
    });
    while (!started.load()) std::this_thread::yield();
    absl::StatusOr<std::optional<double>> with_prefill =
        TimeSteps(decode_step, kDecodeWarmup, points_left - 1, current_.budget->seconds());
    stop.store(true);
    prefill.join();
    RETURN_IF_ERROR(Annotate(prefill_status, what));
    if (!with_prefill.ok()) return Annotate(with_prefill.status(), what);
    if (!with_prefill->has_value()) break;
    table_.PutInterference({.decode_model = decoder.name,
                            .prefill_model = prefiller.name,
                            .decode_shape = decoder.shape,
                            .prefill_shape = prefiller.shape,
                            .decode_sm_fraction = place.sm_fraction,
                            .decode_batch = batch,
                            .decode_context = context,
                            .prefill_batch = prompts,
                            .prefill_tokens = prompt,
                            .alone_ms = **alone,
                            .with_prefill_ms = **with_prefill,
                            .slowdown = **with_prefill / **alone});
    ++measured;
    ++current_.done;
    Report("interference");
  }
  const int skipped = static_cast<int>(places.size()) - measured;
  current_.done += skipped;
  result.notes.push_back(absl::StrCat(
      "interference: ", decoder.name, "'s decode beside ", prefiller.name, "'s prefill at ",
      measured, " decode share(s)",
      skipped > 0 ? absl::StrCat("; the budget ran out before ", skipped, " more") : ""));
  return absl::OkStatus();
}

absl::Status Run::ProfileModels(const planner::PlacementProblem& problem,
                                const std::vector<int>& models, ProfileResult& out) {
  const planner::PlannerModel& first_model = problem.models[models.front()];
  const std::string first_shape = planner::ShapeKey(first_model.shape);
  // Whether a later model lacks interference runs with the first one.
  bool first_needed = false;
  for (size_t i = 1; i < models.size(); ++i) {
    const std::string shape = planner::ShapeKey(problem.models[models[i]].shape);
    first_needed |= !MissingInterference(shape, first_shape).empty() ||
                    !MissingInterference(first_shape, shape).empty();
  }
  auto seed_of = [&](int index) {
    const config::ModelConfig& model = config_.models[index];
    return model.synthetic ? model.synthetic->seed : uint64_t{0};
  };
  // The first model is loaded first and stays while later ones need it as their partner.
  std::unique_ptr<LoadedModel> first;
  for (size_t i = 0; i < models.size(); ++i) {
    const planner::PlannerModel& planned = problem.models[models[i]];
    const std::string shape = planner::ShapeKey(planned.shape);
    out.models.push_back({.name = planned.name, .shape = shape});
    current_ = Current{.result = &out.models.back(),
                       .budget = std::make_unique<Budget>(options_.max_seconds_per_model)};
    ModelResult& result = *current_.result;
    const bool decode = NeedsGrid(shape, Phase::kDecode);
    const bool prefill = NeedsGrid(shape, Phase::kPrefill);
    for (Phase phase : {Phase::kDecode, Phase::kPrefill}) {
      if (!(phase == Phase::kDecode ? decode : prefill)) {
        result.notes.push_back(
            absl::StrCat(PhaseName(phase), ": in the table already (--force measures it again)"));
      }
    }
    // Its interference runs with the first model: it decoding, and it prefilling.
    std::vector<const Place*> decode_beside, prefill_beside;
    if (i > 0) {
      decode_beside = MissingInterference(shape, first_shape);
      prefill_beside = MissingInterference(first_shape, shape);
    }
    const bool interference = !decode_beside.empty() || !prefill_beside.empty();
    current_.total = (decode ? GridPoints(Phase::kDecode) : 0) +
                     (prefill ? GridPoints(Phase::kPrefill) : 0) +
                     static_cast<int>(decode_beside.size() + prefill_beside.size());
    if (current_.total == 0 && !(i == 0 && first_needed)) continue;

    Report("load");
    absl::StatusOr<std::unique_ptr<LoadedModel>> loaded = Load(planned, seed_of(models[i]));
    if (!loaded.ok()) {
      return Annotate(loaded.status(), absl::StrCat("loading model '", planned.name, "'"));
    }
    std::unique_ptr<LoadedModel> own = *std::move(loaded);
    auto annotate = [&](const absl::Status& status) {
      return Annotate(status, absl::StrCat("profiling model '", planned.name, "'"));
    };
    const Budget& budget = *current_.budget;
    const double grids_until = budget.seconds() * (interference ? 1 - kInterferenceShare : 1);
    if (decode) {
      // Decode gets its points' share of the time left for grids; what it leaves goes on.
      const double points = GridPoints(Phase::kDecode);
      const double share = points / (points + (prefill ? GridPoints(Phase::kPrefill) : 0));
      const double until = budget.Elapsed() + share * budget.Left(grids_until);
      RETURN_IF_ERROR(annotate(MeasureGrid(*own, Phase::kDecode, until)));
    }
    if (prefill) RETURN_IF_ERROR(annotate(MeasureGrid(*own, Phase::kPrefill, grids_until)));
    if (!decode_beside.empty()) {
      RETURN_IF_ERROR(annotate(MeasureInterference(*own, *first, decode_beside)));
    }
    if (!prefill_beside.empty()) {
      RETURN_IF_ERROR(annotate(MeasureInterference(*first, *own, prefill_beside)));
    }
    result.seconds = current_.budget->Elapsed();
    if (i == 0 && first_needed) first = std::move(own);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOptions(const ProfileOptions& options) {
  if (options.sm_fractions.empty()) {
    return absl::InvalidArgumentError("--sm-fractions: give at least one share");
  }
  for (size_t i = 0; i < options.sm_fractions.size(); ++i) {
    const double share = options.sm_fractions[i];
    if (!(share > 0 && share <= 1) || (i > 0 && share <= options.sm_fractions[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sm-fractions: expected increasing shares in (0, 1], got ",
                       Numbers(options.sm_fractions)));
    }
  }
  RETURN_IF_ERROR(CheckAxis("--batches", options.decode_batches));
  RETURN_IF_ERROR(CheckAxis("--prefill-batches", options.prefill_batches));
  RETURN_IF_ERROR(CheckAxis("--tokens", options.tokens));
  if (options.tokens.front() < 2) {
    return absl::InvalidArgumentError(
        "--tokens: a decode context holds at least 2 tokens (one cached, one new)");
  }
  if (!(options.max_seconds_per_model > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-seconds-per-model: expected a positive time, got ", options.max_seconds_per_model));
  }
  if (options.max_repetitions < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--repetitions: expected at least 1, got ", options.max_repetitions));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProfileResult> Profile(const config::Config& config, const ProfileOptions& options,
                                      planner::CostTable* table) {
  RETURN_IF_ERROR(ValidateOptions(options));
  ASSIGN_OR_RETURN(const planner::PlacementProblem problem, planner::ProblemFromConfig(config));
  std::vector<int> models;
  if (options.models.empty()) {
    for (size_t i = 0; i < problem.models.size(); ++i) models.push_back(static_cast<int>(i));
  } else {
    for (const std::string& name : options.models) {
      auto it = std::find_if(problem.models.begin(), problem.models.end(),
                             [&](const planner::PlannerModel& m) { return m.name == name; });
      if (it == problem.models.end()) {
        std::vector<std::string> names;
        for (const planner::PlannerModel& m : problem.models) names.push_back(m.name);
        return absl::NotFoundError(absl::StrCat("no model '", name, "' in ", config.source.string(),
                                                " (it has ", absl::StrJoin(names, ", "), ")"));
      }
      models.push_back(static_cast<int>(it - problem.models.begin()));
    }
  }
  if (models.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(config.source.string(), " has no models"));
  }
  for (int index : models) {
    const config::ModelConfig& model = config.models[index];
    const int64_t context = model.max_context > 0
                                ? model.max_context
                                : problem.models[index].shape.spec.max_position_embeddings;
    if (context > 0 && options.tokens.back() > context) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", model.name, "': tokens ", options.tokens.back(), " exceed its context of ",
          context, " (max_context, or max_position_embeddings)"));
    }
  }

  ASSIGN_OR_RETURN(const config::Backend backend, runtime::ResolveBackend(options.backend));
  ProfileResult result;
  result.gpu = backend == config::Backend::kCpu ? kCpuTableGpu : config.cluster.gpu.name;
  if (!table->gpu.empty() && table->gpu != result.gpu) {
    return absl::FailedPreconditionError(
        absl::StrCat("the table holds grids measured on '", table->gpu, "' but this run measures '",
                     result.gpu, "'", backend == config::Backend::kCpu ? " (the CPU backend)" : "",
                     ": write it to another file"));
  }
  table->gpu = result.gpu;
  absl::StatusOr<std::unique_ptr<Device>> made =
      Device::Create(backend, options.partitions, options.device, config.runtime.cpu_threads,
                     options.sm_fractions);
  if (!made.ok()) {
    return Annotate(made.status(), absl::StrCat("setting up the ",
                                                AsAbsl(config::BackendName(backend)), " backend"));
  }
  std::unique_ptr<Device> device = *std::move(made);
  result.device = device->description();
  std::vector<double> measured;
  for (const Place& place : device->places()) measured.push_back(place.sm_fraction);
  if (measured != options.sm_fractions) {
    result.notes.push_back(absl::StrCat("SM shares measured: ", Numbers(measured), " (asked for ",
                                        Numbers(options.sm_fractions), ")",
                                        device->partitioned()
                                            ? ": as the partitions rounded them"
                                            : ": without SM partitions only the whole device"));
  }
  if (options.interference && models.size() > 1 && !device->partitioned()) {
    result.notes.push_back(
        "interference: not measured (it needs SM partitions of a GPU: green or mps)");
  }
  Run run(config, options, *device, *table);
  RETURN_IF_ERROR(run.ProfileModels(problem, models, result));
  return result;
}

absl::StatusOr<ProfileResult> ProfileToFile(const config::Config& config,
                                            const ProfileOptions& options,
                                            const std::filesystem::path& path) {
  planner::CostTable table;
  if (std::error_code error; std::filesystem::exists(path, error)) {
    ASSIGN_OR_RETURN(table, planner::LoadCostTable(path));
  }
  const std::string before = planner::CostTableToJson(table);
  absl::StatusOr<ProfileResult> result = Profile(config, options, &table);
  // A failed run writes what it measured before failing, never an empty new table.
  const bool measured = !table.grids.empty() || !table.interference.empty();
  if ((result.ok() || measured) && planner::CostTableToJson(table) != before) {
    RETURN_IF_ERROR(planner::WriteCostTable(table, path));
  }
  return result;
}

}  // namespace muxserve::profiler
