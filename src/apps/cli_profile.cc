#include "cli_profile.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli_local.h"
#include "fmt/core.h"
#include "muxserve/config/config.h"
#include "muxserve/profiler/profiler.h"

namespace muxserve::cli {
namespace {

struct ProfileFlags {
  std::filesystem::path config;
  std::string out;         // empty: placement.cost_table of the config, else kDefaultOut
  std::string backend;     // empty: runtime.backend of the config
  std::string partitions;  // empty: runtime.partitions of the config
  bool no_interference = false;
  bool no_progress = false;
  profiler::ProfileOptions options;
};

// The values --backend and --partitions accept (checked by CLI11).
config::Backend BackendFlag(const std::string& name) {
  return name == "cpu"    ? config::Backend::kCpu
         : name == "cuda" ? config::Backend::kCuda
                          : config::Backend::kAuto;
}

config::PartitionBackend PartitionsFlag(const std::string& name) {
  return name == "green"  ? config::PartitionBackend::kGreen
         : name == "mps"  ? config::PartitionBackend::kMps
         : name == "none" ? config::PartitionBackend::kNone
                          : config::PartitionBackend::kAuto;
}

constexpr char kDefaultOut[] = "cost_table.json";

// One stderr line, rewritten in place: model, phase, points done of all, elapsed time.
class ProgressBar {
 public:
  void Update(const profiler::Progress& progress) {
    if (!model_.empty() && progress.model != model_) std::fputc('\n', stderr);
    model_ = progress.model;
    constexpr int kWidth = 24;
    const int filled =
        progress.total > 0 ? std::min(kWidth, kWidth * progress.done / progress.total) : 0;
    fmt::print(stderr, "\r{:<20} {:<12} [{}{}] {:>4}/{:<4} points {:7.1f} s", progress.model,
               progress.phase, std::string(filled, '#'), std::string(kWidth - filled, '.'),
               progress.done, progress.total, progress.elapsed_seconds);
    std::fflush(stderr);
  }
  // Ends the line the bar is on, if any.
  void Finish() {
    if (!model_.empty()) std::fputc('\n', stderr);
    model_.clear();
  }

 private:
  std::string model_;
};

int RunProfile(ProfileFlags flags) {
  absl::StatusOr<config::Config> config = config::LoadConfig(flags.config);
  if (!config.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(config.status().message()));
    return kInvalidConfigExitCode;
  }
  if (absl::Status valid = profiler::ValidateOptions(flags.options); !valid.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(valid.message()));
    return kInvalidConfigExitCode;
  }
  const std::filesystem::path out = !flags.out.empty() ? std::filesystem::path(flags.out)
                                    : !config->placement.cost_table.empty()
                                        ? config->placement.cost_table
                                        : std::filesystem::path(kDefaultOut);
  flags.options.backend =
      flags.backend.empty() ? config->runtime.backend : BackendFlag(flags.backend);
  flags.options.partitions =
      flags.partitions.empty() ? config->runtime.partitions : PartitionsFlag(flags.partitions);
  flags.options.interference = !flags.no_interference;
  ProgressBar bar;
  if (!flags.no_progress) {
    flags.options.on_progress = [&bar](const profiler::Progress& progress) {
      bar.Update(progress);
    };
  }
  absl::StatusOr<profiler::ProfileResult> result =
      profiler::ProfileToFile(*config, flags.options, out);
  bar.Finish();
  if (!result.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(result.status().message()));
    return result.status().code() == absl::StatusCode::kInvalidArgument ||
                   result.status().code() == absl::StatusCode::kNotFound
               ? kInvalidConfigExitCode
               : 1;
  }
  fmt::print("device: {}; table gpu '{}'\n", result->device, result->gpu);
  for (const std::string& note : result->notes) fmt::print("note: {}\n", note);
  for (const profiler::ModelResult& model : result->models) {
    fmt::print("{} ({}): {:.1f} s\n", model.name, model.shape, model.seconds);
    for (const std::string& note : model.notes) fmt::print("  {}\n", note);
  }
  fmt::print("wrote {}\n", out.string());
  return 0;
}

}  // namespace

void AddProfileCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ProfileFlags>();
  profiler::ProfileOptions& options = flags->options;
  CLI::App* profile = app.add_subcommand(
      "profile",
      "Measure prefill and decode step latency of the config's models on this machine and "
      "write the planner's cost table");
  profile->add_option("--config", flags->config, "The YAML file")->required();
  profile->add_option("--out", flags->out,
                      "The cost table to merge into and write (default: placement.cost_table "
                      "of the config, else cost_table.json)");
  profile
      ->add_option("--max-seconds-per-model", options.max_seconds_per_model,
                   "Wall time per model; points that do not fit are left out")
      ->capture_default_str();
  profile->add_option("--sm-fractions", options.sm_fractions, "Shares of the GPU's SMs")
      ->delimiter(',')
      ->capture_default_str();
  profile->add_option("--batches", options.decode_batches, "Decode batch sizes")
      ->delimiter(',')
      ->capture_default_str();
  profile->add_option("--prefill-batches", options.prefill_batches, "Prompts per prefill job")
      ->delimiter(',')
      ->capture_default_str();
  profile->add_option("--tokens", options.tokens, "Decode contexts and prompt lengths, in tokens")
      ->delimiter(',')
      ->capture_default_str();
  profile
      ->add_option("--repetitions", options.max_repetitions,
                   "Most timed runs per point (after warm-up; at least 3 when time allows)")
      ->capture_default_str();
  profile->add_option("--model", options.models, "Only this model of the config (repeatable)");
  profile
      ->add_option("--backend", flags->backend,
                   "auto (the GPU when there is one), cpu (the whole machine only) or cuda; "
                   "default: runtime.backend of the config")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  profile
      ->add_option("--partitions", flags->partitions,
                   "How SM shares are made on the GPU: auto (green where the driver has it), "
                   "green, mps or none (the whole GPU only); default: runtime.partitions of "
                   "the config")
      ->check(CLI::IsMember({"auto", "green", "mps", "none"}));
  profile->add_option("--device", options.device, "CUDA device")->capture_default_str();
  profile->add_flag("--force", options.force, "Measure again what the table already holds");
  profile->add_flag("--no-interference", flags->no_interference,
                    "Skip the decode-beside-prefill interference runs");
  profile->add_flag("--no-progress", flags->no_progress, "No progress bar on stderr");
  profile->callback([flags, exit_code] { *exit_code = RunProfile(*flags); });
}

}  // namespace muxserve::cli
