#include "cli_bench.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli_channel.h"
#include "cli_table.h"
#include "fmt/core.h"
#include "muxserve/common/status.h"
#include "muxserve/loadgen/bench.h"
#include "muxserve/loadgen/experiment.h"
#include "muxserve/loadgen/report.h"
#include "muxserve/loadgen/stats.h"
#include "muxserve/loadgen/trace.h"
#include "muxserve/loadgen/workload.h"

extern char** environ;

namespace muxserve::cli {
namespace {

namespace lg = ::muxserve::loadgen;

// Exit status of plot_bench.py when matplotlib is missing: plotting is optional.
constexpr int kPlotUnavailable = 3;
// SLO scales shown in the terminal tables (the JSON has all of them).
constexpr double kShownSloScales[] = {2, 5, 10};

int Fail(const absl::Status& status) {
  fmt::print(stderr, "error: {}\n", std::string(status.message()));
  return 1;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    items.emplace_back(item);
  }
  return items;
}

std::string Timestamped(const std::string& prefix) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &local);
  return prefix + stamp;
}

// --- the flags bench and experiment share ----------------------------------------------------

struct WorkloadFlags {
  std::string models;
  double alpha = 0.9;
  double rate_scale = 1.0;
  std::string rates;
  std::string arrival = "poisson";
  double cv = 1.0;
  std::string lengths = "sharegpt";
  std::string trace;
  double duration = 0;
  int64_t requests = 0;
  uint64_t seed = 1;
  std::string slo_base = "measure";
  int slo_max_scale = 20;
  std::string token_range = "3,250";
  double request_timeout = 0;
  double drain_timeout = 600;
  std::string probe_lengths = "16,64,256,1024";
  int32_t probe_output = 32;
  int probe_repeats = 3;
  bool quiet = false;
  bool no_plots = false;
  std::string plot_script;
  CLI::Option* cv_option = nullptr;
};

void AddWorkloadFlags(CLI::App* command, WorkloadFlags* flags) {
  command->add_option("--models", flags->models,
                      "Models in popularity rank order, comma-separated (default: all served)");
  CLI::Option* alpha = command
                           ->add_option("--alpha", flags->alpha,
                                        "Power-law exponent: model k gets rate-scale * k^-alpha")
                           ->capture_default_str();
  CLI::Option* scale = command
                           ->add_option("--rate-scale", flags->rate_scale,
                                        "Requests/s of the most popular model under the power law")
                           ->capture_default_str();
  CLI::Option* rates = command->add_option(
      "--rates", flags->rates, "Explicit rates instead of the power law: m1=2,m2=0.5 (req/s)");
  rates->excludes(alpha)->excludes(scale);
  CLI::Option* arrival = command
                             ->add_option("--arrival", flags->arrival,
                                          "Arrival process of each model: poisson or gamma")
                             ->capture_default_str();
  flags->cv_option =
      command->add_option("--cv", flags->cv, "Coefficient of variation of gamma gaps (burstiness)");
  CLI::Option* lengths = command
                             ->add_option("--lengths", flags->lengths,
                                          "sharegpt, chatlmsys, fixed:PROMPT,OUTPUT or trace:FILE")
                             ->capture_default_str();
  CLI::Option* trace = command->add_option(
      "--trace", flags->trace, "Replay this JSONL trace (its arrivals, models and lengths)");
  for (CLI::Option* option : {alpha, scale, rates, arrival, flags->cv_option, lengths}) {
    trace->excludes(option);
  }
  command->add_option("--duration", flags->duration,
                      "Seconds of arrivals (default 60 when generating; a trace: all of it)");
  command->add_option("--requests", flags->requests, "Send this many requests at most");
  command->add_option("--seed", flags->seed, "Seed of arrivals, lengths and prompts")
      ->capture_default_str();
  command
      ->add_option("--slo-base", flags->slo_base,
                   "measure (each model alone at batch 1, before the run) or a slo_base.json")
      ->capture_default_str();
  command->add_option("--slo-max-scale", flags->slo_max_scale, "SLO scales 1..N")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  command
      ->add_option("--token-range", flags->token_range,
                   "Token ids of synthetic prompts: MIN,MAX (inclusive)")
      ->capture_default_str();
  command
      ->add_option("--request-timeout", flags->request_timeout,
                   "Deadline of each request in seconds from its arrival (0: none)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--drain-timeout", flags->drain_timeout,
                   "Seconds to wait after the last send before cancelling what still runs")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--probe-lengths", flags->probe_lengths,
                   "Prompt lengths of the base-latency probes")
      ->capture_default_str();
  command->add_option("--probe-output", flags->probe_output, "Output tokens of each probe")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  command->add_option("--probe-repeats", flags->probe_repeats, "Probes per prompt length")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  command->add_flag("--quiet", flags->quiet, "No live progress line");
  command->add_flag("--no-plots", flags->no_plots, "Do not draw PNG plots");
  command->add_option("--plot-script", flags->plot_script,
                      "plot_bench.py to draw with (default: found above the executable)");
}

absl::StatusOr<lg::BenchOptions> ToBenchOptions(const WorkloadFlags& flags) {
  lg::BenchOptions options;
  lg::WorkloadSpec& spec = options.workload;
  spec.models = SplitList(flags.models);
  spec.explicit_rates = flags.rates;
  spec.alpha = flags.alpha;
  spec.rate_scale = flags.rate_scale;
  ASSIGN_OR_RETURN(spec.arrival.kind, lg::ParseArrivalKind(flags.arrival));
  if (flags.cv_option->count() > 0 && spec.arrival.kind != lg::ArrivalKind::kGamma) {
    return absl::InvalidArgumentError("--cv needs --arrival gamma (Poisson gaps have CV 1)");
  }
  spec.arrival.cv = flags.cv;
  spec.lengths = flags.lengths;
  spec.trace = flags.trace;
  spec.duration_s = flags.duration;
  spec.max_requests = flags.requests;
  spec.seed = flags.seed;
  if (flags.duration < 0 || flags.requests < 0) {
    return absl::InvalidArgumentError("--duration and --requests must be >= 0");
  }
  options.slo_base = flags.slo_base;
  options.slo_scales = lg::DefaultSloScales(flags.slo_max_scale);
  ASSIGN_OR_RETURN(options.driver.token_range, lg::ParseTokenRange(flags.token_range));
  options.probe.token_range = options.driver.token_range;
  options.driver.seed = flags.seed;
  options.driver.request_timeout_s = flags.request_timeout;
  options.driver.drain_timeout_s = flags.drain_timeout;
  options.probe.prompt_lengths.clear();
  for (const std::string& item : SplitList(flags.probe_lengths)) {
    int32_t length = 0;
    if (!absl::SimpleAtoi(item, &length) || length < 1) {
      return absl::InvalidArgumentError(
          fmt::format("--probe-lengths: '{}' is not a positive token count", item));
    }
    options.probe.prompt_lengths.push_back(length);
  }
  options.probe.output_tokens = flags.probe_output;
  options.probe.repeats = flags.probe_repeats;
  return options;
}

// --- progress, tables and plots ----------------------------------------------------------------

// The live line: rewritten in place on a terminal, one line every 10 s otherwise; End() leaves
// the last state shown and readies the line for the next run.
class ProgressLine {
 public:
  void Show(const lg::Progress& p) {
    last_ = fmt::format(
        "[{:7.1f}s] sent {}/{}  finished {}  errors {}  aborted {}  in flight {}  |  "
        "{:.1f} req/s sent  {:.1f} req/s done  {:.0f} tok/s",
        p.elapsed_s, p.sent, p.total, p.finished, p.errors, p.aborted, p.in_flight(), p.send_rate,
        p.finish_rate, p.token_rate);
    if (tty_) {
      fmt::print(stderr, "\r\033[K{}", last_);
    } else if (p.elapsed_s - last_printed_s_ >= 10) {
      fmt::print(stderr, "{}\n", last_);
      last_printed_s_ = p.elapsed_s;
      last_.clear();
    }
    std::fflush(stderr);
  }
  void End() {
    if (!last_.empty()) {
      if (tty_) {
        fmt::print(stderr, "\n");
      } else {
        fmt::print(stderr, "{}\n", last_);
      }
    }
    last_.clear();
    last_printed_s_ = -10;
  }

 private:
  const bool tty_ = isatty(STDERR_FILENO) != 0;
  std::string last_;  // shown but not yet ended with a newline (terminal), or not yet printed
  double last_printed_s_ = -10;
};

std::string Scaled(double value, double unit, int decimals) {
  if (!std::isfinite(value)) return "-";
  return fmt::format("{:.{}f}", value * unit, decimals);
}

std::string Percentiles(const lg::Distribution& d, double unit, int decimals) {
  return fmt::format("{}/{}/{}", Scaled(d.p50, unit, decimals), Scaled(d.p90, unit, decimals),
                     Scaled(d.p99, unit, decimals));
}

std::string SloAt(const lg::ModelSummary& summary, double scale) {
  for (const lg::SloPoint& point : summary.slo) {
    if (point.scale == scale) return fmt::format("{:.1f}%", 100 * point.attainment);
  }
  return "-";
}

std::vector<std::string> SummaryRow(const lg::ModelSummary& s) {
  std::vector<std::string> row = {s.name,
                                  fmt::format("{:.3g}", s.rate),
                                  std::to_string(s.sent),
                                  std::to_string(s.finished),
                                  std::to_string(s.errors),
                                  std::to_string(s.aborted),
                                  fmt::format("{:.3f}", s.throughput_rps),
                                  fmt::format("{:.1f}", s.throughput_tps),
                                  Percentiles(s.ttft_s, 1e3, 1),
                                  Percentiles(s.tpot_s, 1e3, 2),
                                  Percentiles(s.e2e_s, 1, 2)};
  for (double scale : kShownSloScales) row.push_back(SloAt(s, scale));
  return row;
}

void PrintSummary(const lg::RunSummary& summary) {
  std::vector<std::string> header = {"MODEL",
                                     "RATE",
                                     "SENT",
                                     "FINISHED",
                                     "ERRORS",
                                     "ABORTED",
                                     "REQ/S",
                                     "TOK/S",
                                     "TTFT ms p50/p90/p99",
                                     "TPOT ms p50/p90/p99",
                                     "E2E s p50/p90/p99"};
  for (double scale : kShownSloScales) header.push_back(fmt::format("SLO@{:g}", scale));
  std::vector<std::vector<std::string>> rows;
  for (const lg::ModelSummary& model : summary.models) rows.push_back(SummaryRow(model));
  rows.push_back(SummaryRow(summary.overall));
  PrintTable(stdout, header, rows);
  fmt::print(
      "\nthroughput, rate-weighted (MuxServe: sum(rate*tpt)/sum(rate)): {:.3f} req/s, {:.1f} "
      "tok/s\nthroughput, plain sum over models: {:.3f} req/s, {:.1f} tok/s\n",
      summary.throughput_rps_weighted, summary.throughput_tps_weighted, summary.throughput_rps_sum,
      summary.throughput_tps_sum);
  if (!summary.overall.slo.empty()) {
    std::string curve;
    for (const lg::SloPoint& point : summary.overall.slo) {
      curve += fmt::format(" {:g}:{:.0f}%", point.scale, 100 * point.attainment);
    }
    fmt::print("SLO attainment by scale (overall):{}\n", curve);
  }
  fmt::print("duration {:.2f} s (last completion), latest send {:.1f} ms after its arrival\n",
             summary.duration_s, 1e3 * summary.max_send_lag_s);
  for (const auto& [message, count] : summary.error_messages) {
    fmt::print("not finished: {} x {}\n", count, message);
  }
}

// plot_bench.py: the flag's, else the first scripts/plot_bench.py in a folder above this
// executable (the build folder lies inside the source tree).
std::optional<std::filesystem::path> FindPlotScript(const std::string& flag) {
  if (!flag.empty()) return std::filesystem::path(flag);
  std::error_code error;
  std::filesystem::path folder = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return std::nullopt;
  while (folder.has_parent_path() && folder != folder.parent_path()) {
    folder = folder.parent_path();
    const std::filesystem::path candidate = folder / "scripts" / "plot_bench.py";
    if (std::filesystem::exists(candidate, error)) return candidate;
  }
  return std::nullopt;
}

// Runs plot_bench.py with the first interpreter that has matplotlib: Debian's (scripts/setup.sh
// installs python3-matplotlib for it), then the python3 on the PATH (which may be another one).
void DrawPlots(const WorkloadFlags& flags, const std::string& kind,
               const std::filesystem::path& dir) {
  if (flags.no_plots) return;
  std::fflush(stdout);
  const std::optional<std::filesystem::path> script = FindPlotScript(flags.plot_script);
  if (!script) {
    fmt::print(stderr, "plots skipped: scripts/plot_bench.py not found (use --plot-script)\n");
    return;
  }
  bool spawned = false;
  for (const char* python : {"/usr/bin/python3", "python3"}) {
    std::vector<std::string> argv = {python, script->string(), kind, dir.string()};
    std::vector<char*> args;
    for (std::string& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    if (posix_spawnp(&pid, python, nullptr, nullptr, args.data(), environ) != 0) continue;
    spawned = true;
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == kPlotUnavailable) continue;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fmt::print(stderr, "plots failed: {} {} exited with status {}\n", python, script->string(),
                 status);
    }
    return;
  }
  if (!spawned) fmt::print(stderr, "plots skipped: python3 is not available\n");
}

// --- bench --------------------------------------------------------------------------------------

struct BenchFlags {
  WorkloadFlags workload;
  ChannelFlags channel;
  std::string out;
  bool dry_run = false;
};

void PrintWorkload(const lg::PreparedWorkload& workload) {
  std::map<std::string, std::vector<double>> prompts;
  std::map<std::string, std::vector<double>> outputs;
  for (const lg::RequestSpec& request : workload.requests) {
    prompts[request.model].push_back(request.prompt_tokens);
    outputs[request.model].push_back(request.output_tokens);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& [model, rate] : workload.rates) {
    const lg::Distribution prompt = lg::Describe(prompts[model]);
    const lg::Distribution output = lg::Describe(outputs[model]);
    rows.push_back({model, fmt::format("{:.3g}", rate), std::to_string(prompt.count),
                    Scaled(prompt.mean, 1, 1), Scaled(prompt.p50, 1, 0), Scaled(output.mean, 1, 1),
                    Scaled(output.p50, 1, 0)});
  }
  PrintTable(
      stdout,
      {"MODEL", "RATE", "REQUESTS", "PROMPT_MEAN", "PROMPT_P50", "OUTPUT_MEAN", "OUTPUT_P50"},
      rows);
}

int RunBenchCommand(const BenchFlags& flags) {
  absl::StatusOr<lg::BenchOptions> options = ToBenchOptions(flags.workload);
  if (!options.ok()) return Fail(options.status());
  options->address = flags.channel.address;
  const std::filesystem::path out = flags.out.empty() ? Timestamped("muxserve-bench-") : flags.out;

  if (flags.dry_run) {
    absl::StatusOr<lg::PreparedWorkload> workload = lg::PrepareWorkload(options->workload, {});
    if (!workload.ok()) return Fail(workload.status());
    PrintWorkload(*workload);
    std::error_code error;
    std::filesystem::create_directories(out, error);
    if (error) {
      return Fail(absl::PermissionDeniedError(
          fmt::format("cannot create '{}': {}", out.string(), error.message())));
    }
    if (absl::Status status = lg::WriteTrace(out / "workload.jsonl", workload->requests);
        !status.ok()) {
      return Fail(status);
    }
    fmt::print("dry run: {} requests written to {}\n", workload->requests.size(),
               (out / "workload.jsonl").string());
    return 0;
  }

  auto progress = std::make_shared<ProgressLine>();
  if (!flags.workload.quiet) {
    options->driver.on_progress = [progress](const lg::Progress& p) { progress->Show(p); };
  }
  options->on_base_model = [](const std::string& model) {
    fmt::print(stderr, "measuring the base latency of {} (alone, batch 1)\n", model);
  };
  options->out_dir = out;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(flags.channel);
  if (!channel.ok()) return Fail(channel.status());
  absl::StatusOr<lg::BenchResult> result = lg::RunBenchOn(*std::move(channel), *options);
  progress->End();
  if (!result.ok()) return Fail(result.status());
  if (result->workload.clipped > 0) {
    fmt::print("{} requests were shortened to fit their model's context\n",
               result->workload.clipped);
  }
  PrintSummary(result->summary);
  fmt::print("results: {}\n", out.string());
  DrawPlots(flags.workload, "run", out);
  return 0;
}

// --- experiment ---------------------------------------------------------------------------------

struct ExperimentFlags {
  WorkloadFlags workload;
  std::string config;
  std::string modes = "muxserve,temporal,spatial";
  std::string out;
  std::string daemon;
  double startup_timeout = 300;
  std::string rate_scales;
  std::string trace_speedups;
};

void PrintComparison(const std::vector<lg::ModeResult>& results) {
  std::vector<std::string> header = {
      "MODE",           "SENT",      "FINISHED",       "ERRORS",    "ABORTED",
      "REQ/S weighted", "REQ/S sum", "TOK/S weighted", "TOK/S sum", "TTFT ms p50/p99",
      "E2E s p50/p99"};
  for (double scale : kShownSloScales) header.push_back(fmt::format("SLO@{:g}", scale));
  std::vector<std::vector<std::string>> rows;
  for (const lg::ModeResult& result : results) {
    const lg::RunSummary& s = result.summary;
    const lg::ModelSummary& all = s.overall;
    std::vector<std::string> row = {
        result.mode,
        std::to_string(all.sent),
        std::to_string(all.finished),
        std::to_string(all.errors),
        std::to_string(all.aborted),
        fmt::format("{:.3f}", s.throughput_rps_weighted),
        fmt::format("{:.3f}", s.throughput_rps_sum),
        fmt::format("{:.1f}", s.throughput_tps_weighted),
        fmt::format("{:.1f}", s.throughput_tps_sum),
        fmt::format("{}/{}", Scaled(all.ttft_s.p50, 1e3, 1), Scaled(all.ttft_s.p99, 1e3, 1)),
        fmt::format("{}/{}", Scaled(all.e2e_s.p50, 1, 2), Scaled(all.e2e_s.p99, 1, 2))};
    for (double scale : kShownSloScales) row.push_back(SloAt(all, scale));
    rows.push_back(std::move(row));
  }
  PrintTable(stdout, header, rows);
}

int RunExperimentCommand(const ExperimentFlags& flags) {
  absl::StatusOr<lg::BenchOptions> bench = ToBenchOptions(flags.workload);
  if (!bench.ok()) return Fail(bench.status());
  absl::StatusOr<std::vector<std::string>> modes = lg::ParseModes(flags.modes);
  if (!modes.ok()) return Fail(modes.status());
  lg::ExperimentOptions options;
  options.config = flags.config;
  options.modes = *modes;
  options.daemon_binary = flags.daemon;
  options.startup_timeout_s = flags.startup_timeout;
  options.out_dir = flags.out.empty() ? Timestamped("muxserve-experiment-") : flags.out;
  if (!flags.rate_scales.empty() || !flags.trace_speedups.empty()) {
    const bool trace = !flags.trace_speedups.empty();
    if (trace && flags.workload.trace.empty()) {
      return Fail(absl::InvalidArgumentError("--trace-speedups needs --trace"));
    }
    if (!trace && !flags.workload.trace.empty()) {
      return Fail(absl::InvalidArgumentError("--rate-scales: a trace has its own rates; use "
                                             "--trace-speedups"));
    }
    if (!trace && !flags.workload.rates.empty()) {
      return Fail(absl::InvalidArgumentError(
          "--rate-scales scales the power law; --rates gives the rates themselves"));
    }
    absl::StatusOr<std::vector<lg::LoadPoint>> loads =
        lg::ParseLoads(trace ? flags.trace_speedups : flags.rate_scales, trace);
    if (!loads.ok()) return Fail(loads.status());
    options.loads = *std::move(loads);
  }
  auto progress = std::make_shared<ProgressLine>();
  if (!flags.workload.quiet) {
    bench->driver.on_progress = [progress](const lg::Progress& p) { progress->Show(p); };
  }
  options.bench = *std::move(bench);
  options.on_status = [progress](const std::string& message) {
    progress->End();
    fmt::print(stderr, "[experiment] {}\n", message);
  };
  absl::StatusOr<std::vector<lg::ModeResult>> results = lg::RunExperiment(options);
  progress->End();
  if (!results.ok()) return Fail(results.status());
  for (const lg::ModeResult& result : *results) {
    fmt::print("\n== {}{}{} ==\n", result.mode, result.load.empty() ? "" : " ", result.load);
    PrintSummary(result.summary);
  }
  for (const std::vector<lg::ModeResult>& same_load : lg::GroupByLoad(*results)) {
    const std::string& load = same_load.front().load;
    fmt::print("\n== comparison{}{} ==\n", load.empty() ? "" : " ", load);
    PrintComparison(same_load);
  }
  fmt::print("results: {}\n", options.out_dir.string());
  DrawPlots(flags.workload, "compare", options.out_dir);
  return 0;
}

// --- trace --------------------------------------------------------------------------------------

struct ChatLmsysFlags {
  std::string out;
  std::string models;
  int num_models = 16;
  int64_t requests = 4089;
  double window = 43200;
  double alpha = 0.65;
  double amplitude = 0.5;
  double cv = 2.0;
  std::string lengths = "chatlmsys";
  uint64_t seed = 1;
  double compress = 1;
};

int RunGenerateChatLmsys(const ChatLmsysFlags& flags) {
  lg::ChatLmsysOptions options;
  options.models = SplitList(flags.models);
  if (options.models.empty()) {
    for (int i = 0; i < flags.num_models; ++i) options.models.push_back(fmt::format("llm-{}", i));
  }
  options.expected_requests = flags.requests;
  options.window_s = flags.window;
  options.alpha = flags.alpha;
  options.amplitude = flags.amplitude;
  options.cv = flags.cv;
  options.seed = flags.seed;
  absl::StatusOr<lg::LengthSampler> lengths = lg::LengthSampler::Parse(flags.lengths);
  if (!lengths.ok()) return Fail(lengths.status());
  options.lengths = *lengths;
  absl::StatusOr<std::vector<lg::RequestSpec>> trace = lg::GenerateChatLmsysTrace(options);
  if (!trace.ok()) return Fail(trace.status());
  trace = lg::CompressTrace(*std::move(trace), flags.compress);
  if (!trace.ok()) return Fail(trace.status());
  if (absl::Status status = lg::WriteTrace(flags.out, *trace); !status.ok()) return Fail(status);
  fmt::print("{} requests over {:.1f} s for {} models written to {}\n", trace->size(),
             trace->empty() ? 0.0 : trace->back().arrival_s, options.models.size(), flags.out);
  return 0;
}

int RunCompress(double factor, const std::string& in, const std::string& out) {
  absl::StatusOr<std::vector<lg::RequestSpec>> trace = lg::ReadTrace(in);
  if (!trace.ok()) return Fail(trace.status());
  trace = lg::CompressTrace(*std::move(trace), factor);
  if (!trace.ok()) return Fail(trace.status());
  if (absl::Status status = lg::WriteTrace(out, *trace); !status.ok()) return Fail(status);
  fmt::print("{} requests, now over {:.2f} s, written to {}\n", trace->size(),
             trace->empty() ? 0.0 : trace->back().arrival_s, out);
  return 0;
}

// Counts per power-of-two bin: [1, 2), [2, 4), ..., as {"lower": L, "upper": U, "count": N}.
nlohmann::json Histogram(const std::vector<double>& values) {
  std::map<int, int64_t> bins;
  for (double value : values)
    bins[value < 1 ? 0 : static_cast<int>(std::floor(std::log2(value)))]++;
  nlohmann::json histogram = nlohmann::json::array();
  for (const auto& [bin, count] : bins) {
    histogram.push_back(
        {{"lower", int64_t{1} << bin}, {"upper", int64_t{1} << (bin + 1)}, {"count", count}});
  }
  return histogram;
}

int RunTraceStats(const std::string& in, const std::string& json_out) {
  absl::StatusOr<std::vector<lg::RequestSpec>> trace = lg::ReadTrace(in);
  if (!trace.ok()) return Fail(trace.status());
  const std::map<std::string, double> rates = lg::TraceRates(*trace);
  std::map<std::string, std::vector<double>> prompts;
  std::map<std::string, std::vector<double>> outputs;
  for (const lg::RequestSpec& request : *trace) {
    for (const std::string& key : {request.model, std::string("(all)")}) {
      prompts[key].push_back(request.prompt_tokens);
      outputs[key].push_back(request.output_tokens);
    }
  }
  // The busiest model first, after the whole trace.
  std::vector<std::string> order;
  for (const auto& [model, values] : prompts) order.push_back(model);
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return prompts[a].size() > prompts[b].size();
  });
  std::vector<std::vector<std::string>> rows;
  nlohmann::json models = nlohmann::json::object();
  for (const std::string& model : order) {
    const std::vector<double>& prompt_values = prompts[model];
    const lg::Distribution prompt = lg::Describe(prompt_values);
    const lg::Distribution output = lg::Describe(outputs[model]);
    const double rate = model == "(all)" ? 0 : rates.at(model);
    rows.push_back({model, std::to_string(prompt.count),
                    model == "(all)" ? "-" : fmt::format("{:.4g}", rate),
                    fmt::format("{:.1f}/{:.0f}/{:.0f}/{:.0f}", prompt.mean, prompt.p50, prompt.p90,
                                prompt.max),
                    fmt::format("{:.1f}/{:.0f}/{:.0f}/{:.0f}", output.mean, output.p50, output.p90,
                                output.max)});
    models[model] = {{"requests", prompt.count},
                     {"rate", rate},
                     {"prompt_tokens", lg::ToJson(prompt)},
                     {"output_tokens", lg::ToJson(output)},
                     {"prompt_histogram", Histogram(prompt_values)},
                     {"output_histogram", Histogram(outputs[model])}};
  }
  PrintTable(stdout,
             {"MODEL", "REQUESTS", "RATE", "PROMPT mean/p50/p90/max", "OUTPUT mean/p50/p90/max"},
             rows);
  fmt::print("span {:.2f} s\n", trace->empty() ? 0.0 : trace->back().arrival_s);
  if (!json_out.empty()) {
    const nlohmann::json stats = {{"trace", in}, {"models", models}};
    if (absl::Status status = lg::WriteJsonFile(json_out, stats); !status.ok()) {
      return Fail(status);
    }
  }
  return 0;
}

void AddTraceCommands(CLI::App& app, int* exit_code) {
  CLI::App* trace = app.add_subcommand("trace", "Make, compress and describe request traces");
  trace->require_subcommand(1);

  auto chat = std::make_shared<ChatLmsysFlags>();
  CLI::App* generate = trace->add_subcommand(
      "generate-chatlmsys", "A ChatLMSYS-like trace on the raw 12-hour timeline (see --compress)");
  generate->add_option("--out", chat->out, "JSONL file to write")->required();
  CLI::Option* models =
      generate->add_option("--models", chat->models, "Model names in popularity rank order");
  generate->add_option("--num-models", chat->num_models, "Models llm-0..llm-N-1 when no --models")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000))
      ->excludes(models);
  generate->add_option("--requests", chat->requests, "Expected request count")
      ->capture_default_str();
  generate->add_option("--window", chat->window, "Seconds of the raw timeline")
      ->capture_default_str();
  generate->add_option("--alpha", chat->alpha, "Popularity exponent: share of rank k ~ k^-alpha")
      ->capture_default_str();
  generate->add_option("--amplitude", chat->amplitude, "Daily swing: rate ~ 1 - A cos(2 pi t/W)")
      ->capture_default_str();
  generate->add_option("--cv", chat->cv, "Burstiness: CV of the gaps in rescaled time")
      ->capture_default_str();
  generate->add_option("--lengths", chat->lengths, "Length distribution (as bench --lengths)")
      ->capture_default_str();
  generate->add_option("--seed", chat->seed, "Seed")->capture_default_str();
  generate
      ->add_option("--compress", chat->compress,
                   "Divide arrival times by this factor (MuxServe's condense: 500-2000)")
      ->capture_default_str();
  generate->callback([chat, exit_code] { *exit_code = RunGenerateChatLmsys(*chat); });

  auto factor = std::make_shared<double>(1.0);
  auto compress_in = std::make_shared<std::string>();
  auto compress_out = std::make_shared<std::string>();
  CLI::App* compress =
      trace->add_subcommand("compress", "Divide a trace's arrival times by a factor");
  compress->add_option("--factor", *factor, "Compression factor (> 1 makes it faster)")->required();
  compress->add_option("in", *compress_in, "Trace to read")->required();
  compress->add_option("out", *compress_out, "Trace to write")->required();
  compress->callback([factor, compress_in, compress_out, exit_code] {
    *exit_code = RunCompress(*factor, *compress_in, *compress_out);
  });

  auto stats_in = std::make_shared<std::string>();
  auto stats_json = std::make_shared<std::string>();
  CLI::App* stats = trace->add_subcommand(
      "stats", "Per-model request counts, rates and length statistics of a trace");
  stats->add_option("trace", *stats_in, "Trace to read")->required();
  stats->add_option("--json", *stats_json, "Also write the statistics and length histograms here");
  stats->callback(
      [stats_in, stats_json, exit_code] { *exit_code = RunTraceStats(*stats_in, *stats_json); });
}

}  // namespace

void AddBenchCommands(CLI::App& app, int* exit_code) {
  auto bench_flags = std::make_shared<BenchFlags>();
  CLI::App* bench = app.add_subcommand(
      "bench", "Open-loop load against a running muxserved: throughput, latency, SLO attainment");
  AddChannelFlags(bench, &bench_flags->channel);
  AddWorkloadFlags(bench, &bench_flags->workload);
  bench->add_option("--out", bench_flags->out,
                    "Folder for summary.json, requests.jsonl, workload.jsonl, slo_base.json and "
                    "plots (default: muxserve-bench-<time>)");
  bench->add_flag("--dry-run", bench_flags->dry_run,
                  "Only generate the workload and write DIR/workload.jsonl (no server needed; "
                  "name the models)");
  bench->callback([bench_flags, exit_code] { *exit_code = RunBenchCommand(*bench_flags); });

  auto experiment_flags = std::make_shared<ExperimentFlags>();
  CLI::App* experiment = app.add_subcommand(
      "experiment",
      "Serve one config in each scheduling mode and replay the same requests against each");
  experiment->add_option("--config", experiment_flags->config, "muxserved's YAML config")
      ->required()
      ->check(CLI::ExistingFile);
  experiment->add_option("--modes", experiment_flags->modes, "Scheduling modes, in order")
      ->capture_default_str();
  experiment->add_option("--out", experiment_flags->out,
                         "Folder for the results (default: muxserve-experiment-<time>)");
  experiment->add_option("--daemon", experiment_flags->daemon,
                         "muxserved binary (default: the one beside this executable)");
  experiment
      ->add_option("--startup-timeout", experiment_flags->startup_timeout,
                   "Seconds for each daemon to load its models")
      ->capture_default_str();
  CLI::Option* rate_scales = experiment->add_option(
      "--rate-scales", experiment_flags->rate_scales,
      "Several loads, each mode's daemon serving them in turn: rate scales, comma-separated "
      "(instead of --rate-scale)");
  experiment->add_option("--trace-speedups", experiment_flags->trace_speedups,
                         "Several loads of a --trace: its arrivals compressed by each factor")
      ->excludes(rate_scales);
  AddWorkloadFlags(experiment, &experiment_flags->workload);
  experiment->callback(
      [experiment_flags, exit_code] { *exit_code = RunExperimentCommand(*experiment_flags); });

  AddTraceCommands(app, exit_code);
}

}  // namespace muxserve::cli
