#include "cli_plan.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli_local.h"
#include "fmt/core.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/placement.h"

namespace muxserve::cli {
namespace {

// Exit status when no placement exists (a model too large, a rate too high, too few GPUs).
constexpr int kNoPlacementExitCode = 3;

struct PlanFlags {
  std::filesystem::path config;
  std::string out = "plan.json";
};

int RunPlan(const PlanFlags& flags) {
  absl::StatusOr<config::Config> config = config::LoadConfig(flags.config);
  if (!config.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(config.status().message()));
    return kInvalidConfigExitCode;
  }
  absl::StatusOr<planner::PlacementProblem> problem = planner::ProblemFromConfig(*config);
  absl::StatusOr<std::unique_ptr<planner::CostModel>> cost =
      problem.ok() ? planner::CostModelFromConfig(*config)
                   : absl::StatusOr<std::unique_ptr<planner::CostModel>>(problem.status());
  if (!cost.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(cost.status().message()));
    return kInvalidConfigExitCode;
  }
  absl::StatusOr<planner::Placement> placement =
      planner::PlaceFromConfig(*config, *problem, **cost);
  if (!placement.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(placement.status().message()));
    return kNoPlacementExitCode;
  }
  const std::string json = planner::PlacementToJson(*problem, *placement);
  if (flags.out == "-") {
    fmt::print("{}", json);
    return 0;
  }
  fmt::print("{}", planner::FormatPlacement(*problem, *placement));
  std::ofstream out(flags.out, std::ios::binary | std::ios::trunc);
  out << json;
  out.close();
  if (!out) {
    fmt::print(stderr, "error: cannot write '{}'\n", flags.out);
    return 1;
  }
  fmt::print("wrote {}\n", flags.out);
  return 0;
}

}  // namespace

void AddPlanCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<PlanFlags>();
  CLI::App* plan = app.add_subcommand(
      "plan", "Plan which GPUs serve which models (cluster: and placement: of the YAML)");
  plan->add_option("config", flags->config, "The YAML file")->required();
  plan->add_option("--out", flags->out, "Where to write the plan as JSON; '-': print it instead")
      ->capture_default_str();
  plan->callback([flags, exit_code] { *exit_code = RunPlan(*flags); });
}

}  // namespace muxserve::cli
