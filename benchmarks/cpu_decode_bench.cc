// CPU decode speed of the models of a daemon config (default: configs/default.yaml), through the
// UnitEngine as the daemon runs them, next to this machine's memory-bandwidth floor measured in
// the same run. Prints a table and writes benchmarks/results/cpu_decode.json.
//
//   build/benchmarks/cpu_decode_bench [--config configs/default.yaml] [--out FILE]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/synthetic.h"
#include "muxserve/model/tokenizer.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "host_report.h"

namespace muxserve {
namespace {

using Clock = std::chrono::steady_clock;

// Counts tokens and signals the end of one request.
class CountingSink : public engine::RequestSink {
 public:
  void OnDelta(engine::StreamDelta delta) override {
    absl::MutexLock lock(&mu_);
    tokens_ += static_cast<int64_t>(delta.token_ids.size());
  }
  void OnFinish(const engine::FinishInfo&) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }
  int64_t tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  absl::Mutex mu_;
  int64_t tokens_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// Bytes read plus written per second by a large memcpy: the floor for streaming weights.
double MeasureCopyBandwidth() {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::vector<double> rates;
  for (int i = 0; i < 7; ++i) {
    const auto start = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(2.0 * bytes / seconds);
    src[i] = dst[bytes - 1 - i];  // keeps the copies observable
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

struct Run {
  double tokens_per_second;
  double step_ms;  // wall time per generated token of one sequence
};

// `batch` concurrent requests of `prompt` tokens generating `output` tokens each.
Run Decode(engine::UnitEngine& engine, const std::string& model, int batch, int prompt,
           int output) {
  std::vector<std::shared_ptr<CountingSink>> sinks;
  const auto start = Clock::now();
  for (int b = 0; b < batch; ++b) {
    engine::Request request;
    request.model = model;
    for (int i = 0; i < prompt; ++i) request.prompt_tokens.push_back((i * 31 + b * 7) % 250 + 3);
    request.sampling = {.max_tokens = output, .temperature = 0, .ignore_eos = true};
    auto sink = std::make_shared<CountingSink>();
    request.sink = sink;
    sinks.push_back(sink);
    const absl::Status status = engine.Submit(std::move(request));
    if (!status.ok()) {
      std::cerr << "submit failed: " << status << "\n";
      std::exit(1);
    }
  }
  int64_t tokens = 0;
  for (auto& sink : sinks) {
    sink->Wait();
    tokens += sink->tokens();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return {tokens / seconds, seconds / output * 1e3};
}

int Main(int argc, char** argv) {
  CLI::App app("CPU decode speed of a config's models");
  std::string config_path = "configs/default.yaml";
  std::string out_path = "benchmarks/results/cpu_decode.json";
  int prompt = 64, output = 64;
  app.add_option("--config", config_path, "daemon config whose models are measured");
  app.add_option("--out", out_path, "JSON results file");
  app.add_option("--prompt", prompt, "prompt tokens per request");
  app.add_option("--output", output, "generated tokens per request");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  auto config = config::LoadConfig(config_path);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 2;
  }
  engine::UnitOptions options;
  options.cpu_threads = config->runtime.cpu_threads;
  options.kv_cache = config->kv_cache;
  options.scheduler = config->scheduler;
  auto engine = engine::UnitEngine::Create(options, nullptr);
  if (!engine.ok()) {
    std::cerr << engine.status() << "\n";
    return 1;
  }
  const double bandwidth = MeasureCopyBandwidth();
  nlohmann::json results = nlohmann::json::array();
  std::printf("%-14s %10s %6s %14s %12s %14s\n", "model", "fp32 MB", "batch", "tokens/s",
              "ms/token", "floor ms/tok");
  for (const config::ModelConfig& m : config->models) {
    std::filesystem::path dir = m.path;
    model::ModelSpec spec;
    if (m.synthetic.has_value()) {
      dir = config->server.synthetic_dir / m.name;
      spec = m.synthetic->spec;
      if (!std::filesystem::exists(dir / "config.json")) {
        const absl::Status written =
            model::WriteSyntheticModel(dir, {.spec = spec, .seed = m.synthetic->seed});
        if (!written.ok()) {
          std::cerr << written << "\n";
          return 1;
        }
      }
    }
    auto loaded_spec = model::LoadModelSpec(dir);
    auto tokenizer = model::Tokenizer::Load(dir);
    if (!loaded_spec.ok() || !tokenizer.ok()) {
      std::cerr << m.name << ": cannot load\n";
      return 1;
    }
    spec = *loaded_spec;
    const absl::Status added = (*engine)->AddLlm({.name = m.name,
                                                   .model_dir = dir,
                                                   .spec = spec,
                                                   .tokenizer = std::move(*tokenizer),
                                                   .max_context = m.max_context,
                                                   .rate = m.rate});
    if (!added.ok()) {
      std::cerr << added << "\n";
      return 1;
    }
    // The engine loads asynchronously into its loop; one short request makes sure it is in.
    Decode(**engine, m.name, 1, 4, 2);
    const double weight_bytes = static_cast<double>(spec.WeightBytes(DType::kFloat32));
    // Batch 1 must stream every weight once per token: bytes / copy bandwidth.
    const double floor_ms = weight_bytes / bandwidth * 1e3;
    for (int batch : {1, 8, 32}) {
      const Run run = Decode(**engine, m.name, batch, prompt, output);
      std::printf("%-14s %10.1f %6d %14.0f %12.3f %14.3f\n", m.name.c_str(), weight_bytes / 1e6,
                  batch, run.tokens_per_second, run.step_ms, floor_ms);
      results.push_back({{"model", m.name},
                         {"weight_bytes_fp32", weight_bytes},
                         {"batch", batch},
                         {"prompt_tokens", prompt},
                         {"output_tokens", output},
                         {"output_tokens_per_second", run.tokens_per_second},
                         {"ms_per_step", run.step_ms},
                         {"floor_ms_per_step_batch1", floor_ms}});
    }
  }
  const nlohmann::json doc = {
      {"benchmark", "cpu_decode"},
      {"card", bench::HostCard()},
      {"date", bench::UtcDate()},
      {"command", bench::CommandLine(argc, argv)},
      {"config", config_path},
      {"memcpy_bandwidth_bytes_per_second", bandwidth},
      {"note",
       "tokens/s through UnitEngine (prefill included), greedy, ignore_eos; floor = fp32 weight "
       "bytes / memcpy bandwidth (read + written), the least time one batch-1 step can take"},
      {"results", results}};
  std::filesystem::create_directories(std::filesystem::path(out_path).parent_path());
  std::ofstream(out_path) << doc.dump(2) << "\n";
  std::printf("memcpy bandwidth %.1f GB/s; results in %s\n", bandwidth / 1e9, out_path.c_str());
  return 0;
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) { return muxserve::Main(argc, argv); }
