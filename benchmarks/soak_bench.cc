// Soak: a muxserved on the CPU backend with two tiny synthetic models, held at a fixed number of
// concurrent Generate streams (closed loop: each stream that ends is replaced at once) for a
// fixed time. Every request must end with its final message or an error status: none may be
// lost. Records the daemon's RSS over time (growth after warm-up), the latencies (p50/p99 of the
// first message and of the whole stream) and the status counts; writes
// benchmarks/results/soak.json.
//
//   build/benchmarks/soak_bench [--streams 1000] [--seconds 600] [--warmup-seconds 300]
//                               [--muxserved build/src/apps/muxserved] [--out FILE]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/v1/muxserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "host_report.h"

namespace muxserve {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr int kChannels = 8;  // streams spread over several HTTP/2 connections
constexpr char kModels[2][8] = {"soak-a", "soak-b"};

double Seconds(SteadyClock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Resident set of `pid` in bytes, from /proc; 0 when it cannot be read.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      int64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

// Counts of every outcome plus the latencies of the completed requests.
class Tally {
 public:
  void Started() { started_.fetch_add(1); }
  void Ended(const grpc::Status& status, bool finished, int finished_messages, double first_s,
             double total_s, bool after_warmup) {
    absl::MutexLock lock(&mu_);
    if (status.ok() && finished && finished_messages == 1) {
      ++completed_;
      if (after_warmup) {
        first_message_s_.push_back(first_s);
        total_s_.push_back(total_s);
      }
    } else if (status.ok()) {
      ++malformed_;  // OK without exactly one final message: a broken stream
    } else {
      ++errors_[static_cast<int>(status.error_code())];
      if (error_examples_.size() < 5) error_examples_.push_back(status.error_message());
    }
  }
  int64_t started() const { return started_.load(); }
  int64_t ended() {
    absl::MutexLock lock(&mu_);
    int64_t total = completed_ + malformed_;
    for (const auto& [code, count] : errors_) total += count;
    return total;
  }
  nlohmann::json Report() {
    absl::MutexLock lock(&mu_);
    nlohmann::json errors = nlohmann::json::object();
    int64_t error_total = 0;
    for (const auto& [code, count] : errors_) {
      errors[std::to_string(code)] = count;
      error_total += count;
    }
    const int64_t started = started_.load();
    return {{"started", started},
            {"completed_with_final_message", completed_},
            {"ok_without_final_message", malformed_},
            {"error_statuses_by_code", errors},
            {"error_examples", error_examples_},
            {"lost", started - completed_ - malformed_ - error_total},
            {"latency_after_warmup_s",
             {{"samples", first_message_s_.size()},
              {"first_message_p50", Percentile(first_message_s_, 0.50)},
              {"first_message_p99", Percentile(first_message_s_, 0.99)},
              {"total_p50", Percentile(total_s_, 0.50)},
              {"total_p99", Percentile(total_s_, 0.99)}}}};
  }

 private:
  std::atomic<int64_t> started_{0};
  absl::Mutex mu_;
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t malformed_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> error_examples_ ABSL_GUARDED_BY(mu_);
  std::vector<double> first_message_s_ ABSL_GUARDED_BY(mu_);
  std::vector<double> total_s_ ABSL_GUARDED_BY(mu_);
};

class Driver;

// One Generate call on gRPC's callback API; deletes itself when done and lets the driver start
// its replacement.
class Stream final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  Stream(Driver* driver, v1::Muxserve::Stub* stub, v1::GenerateRequest request);
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Driver* driver_;
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  SteadyClock::time_point start_ = SteadyClock::now();
  double first_message_s_ = -1;
  int finished_messages_ = 0;
};

class Driver {
 public:
  Driver(const std::string& address, int streams, SteadyClock::time_point warmup_end,
         SteadyClock::time_point stop)
      : streams_(streams), warmup_end_(warmup_end), stop_(stop) {
    for (int i = 0; i < kChannels; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("muxserve.soak.channel", i);  // distinct arguments: one connection each
      stubs_.push_back(v1::Muxserve::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    }
  }

  void Run() {
    for (int i = 0; i < streams_; ++i) Launch();
  }
  // Called by a stream as it ends; starts its replacement until the stop time.
  void Ended(const grpc::Status& status, bool finished, int finished_messages, double first_s,
             double total_s) {
    tally_.Ended(status, finished, finished_messages, first_s, total_s,
                 SteadyClock::now() >= warmup_end_);
    if (SteadyClock::now() < stop_) Launch();
    in_flight_.fetch_sub(1);
  }
  int64_t in_flight() const { return in_flight_.load(); }
  Tally& tally() { return tally_; }

 private:
  void Launch() {
    const uint64_t n = next_.fetch_add(1);
    v1::GenerateRequest request;
    request.set_model(kModels[n % 2]);
    // Mixed shapes: short and longer prompts and outputs, sampled and greedy.
    request.set_text(absl::StrCat("Request ", n, ": tell me about item ", n % 97,
                                  n % 3 == 0 ? " in great detail, covering its history" : ""));
    v1::SamplingParams* sampling = request.mutable_sampling();
    sampling->set_max_tokens(8 + static_cast<int32_t>(n % 4) * 8);
    sampling->set_temperature(n % 2 == 0 ? 0.0f : 0.8f);
    sampling->set_seed(n);
    in_flight_.fetch_add(1);
    tally_.Started();
    new Stream(this, stubs_[n % kChannels].get(), std::move(request));
  }

  const int streams_;
  const SteadyClock::time_point warmup_end_;
  const SteadyClock::time_point stop_;
  std::vector<std::unique_ptr<v1::Muxserve::Stub>> stubs_;
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> in_flight_{0};
  Tally tally_;
};

Stream::Stream(Driver* driver, v1::Muxserve::Stub* stub, v1::GenerateRequest request)
    : driver_(driver), request_(std::move(request)) {
  context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
  stub->async()->Generate(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void Stream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended: OnDone follows
  if (first_message_s_ < 0) first_message_s_ = Seconds(SteadyClock::now() - start_);
  if (response_.has_finished()) ++finished_messages_;
  StartRead(&response_);
}

void Stream::OnDone(const grpc::Status& status) {
  driver_->Ended(status, finished_messages_ > 0, finished_messages_, first_message_s_,
                 Seconds(SteadyClock::now() - start_));
  delete this;
}

// The daemon's config: two tiny Llama shapes, synthetic, on the CPU backend.
void WriteConfig(const fs::path& path, const fs::path& dir) {
  std::ofstream out(path);
  out << "server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: \"\"\n"
      << "  max_queued_requests: 4096\n  shutdown_grace_seconds: 30\n"
      << "  synthetic_dir: " << (dir / "synthetic").string() << "\n"
      << "runtime:\n  backend: cpu\n  cpu_threads: 1\n"
      << "kv_cache:\n  memory: 256MiB\n"
      << "scheduler:\n  max_batch_size: 256\n"
      << "limits:\n  max_streams_per_client: 0\n"
      << "models:\n"
      << "  - name: " << kModels[0]
      << "\n    synthetic: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 170, "
         "seed: 1}\n"
      << "  - name: " << kModels[1]
      << "\n    synthetic: {layers: 3, hidden: 96, heads: 6, intermediate: 256, seed: 2}\n";
}

int Run(int argc, char** argv) {
  CLI::App app{"soak_bench: a muxserved held at many concurrent streams for a long time"};
  int streams = 1000;
  double seconds = 600;
  double warmup_seconds = 300;
  std::string muxserved = "build/src/apps/muxserved";
  std::string out_path = "benchmarks/results/soak.json";
  app.add_option("--streams", streams, "Concurrent streams")->check(CLI::PositiveNumber);
  app.add_option("--seconds", seconds, "Length of the run, warm-up included");
  // At 1,000 streams on two cores one turnover of the streams takes minutes: RSS only settles
  // after the first one (see docs/reliability.md).
  app.add_option("--warmup-seconds", warmup_seconds,
                 "RSS growth and latencies count from here on");
  app.add_option("--muxserved", muxserved, "The daemon binary");
  app.add_option("--out", out_path, "Where the JSON report goes");
  CLI11_PARSE(app, argc, argv);

  char dir_template[] = "/tmp/muxserve-soak-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const fs::path dir = dir_template;
  const fs::path config = dir / "soak.yaml";
  const fs::path ready = dir / "ready.json";
  const fs::path log = dir / "muxserved.log";
  WriteConfig(config, dir);

  const pid_t pid = fork();
  if (pid == 0) {
    const std::string log_text = log.string();
    std::freopen(log_text.c_str(), "w", stdout);
    std::freopen(log_text.c_str(), "a", stderr);
    execl(muxserved.c_str(), muxserved.c_str(), "--config", config.c_str(), "--ready-file",
          ready.c_str(), "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 3000 && port == 0; ++i) {
    std::ifstream in(ready);
    const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (json.is_object() && json.contains("grpc_port")) port = json["grpc_port"].get<int>();
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (port == 0) {
    std::cerr << "soak_bench: muxserved did not start; log " << log << "\n";
    kill(pid, SIGKILL);
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", port);
  // Wait until both models serve.
  {
    auto stub =
        v1::Muxserve::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    for (int ready_models = 0; ready_models < 2;) {
      grpc::ClientContext context;
      v1::ListModelsResponse models;
      ready_models = 0;
      if (stub->ListModels(&context, v1::ListModelsRequest(), &models).ok()) {
        for (const v1::ModelInfo& model : models.models()) {
          ready_models += model.state() == v1::ModelInfo::SERVING;
        }
      }
      if (ready_models < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  const auto start = SteadyClock::now();
  const auto warmup_end = start + std::chrono::duration_cast<SteadyClock::duration>(
                                      std::chrono::duration<double>(warmup_seconds));
  const auto stop = start + std::chrono::duration_cast<SteadyClock::duration>(
                                std::chrono::duration<double>(seconds));
  Driver driver(address, streams, warmup_end, stop);
  driver.Run();

  nlohmann::json rss_samples = nlohmann::json::array();
  int64_t rss_at_warmup = 0;
  int64_t rss_peak_after_warmup = 0;
  while (SteadyClock::now() < stop) {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    const int64_t rss = ResidentBytes(pid);
    const double t = Seconds(SteadyClock::now() - start);
    rss_samples.push_back({{"t_s", t},
                           {"rss_mib", rss / 1048576.0},
                           {"in_flight", driver.in_flight()},
                           {"ended", driver.tally().ended()}});
    if (SteadyClock::now() >= warmup_end) {
      if (rss_at_warmup == 0) rss_at_warmup = rss;
      rss_peak_after_warmup = std::max(rss_peak_after_warmup, rss);
    }
    std::cerr << "soak: " << static_cast<int>(t) << " s, in flight " << driver.in_flight()
              << ", ended " << driver.tally().ended() << ", rss " << rss / 1048576 << " MiB\n";
  }
  const int64_t rss_at_end = ResidentBytes(pid);
  // No new streams start after `stop`: wait for the ones in flight to end.
  const auto drain_deadline = SteadyClock::now() + std::chrono::seconds(330);
  while (driver.in_flight() > 0 && SteadyClock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double elapsed = Seconds(SteadyClock::now() - start);

  kill(pid, SIGTERM);
  int wait_status = 0;
  waitpid(pid, &wait_status, 0);
  const int exit_code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;

  nlohmann::json report = driver.tally().Report();
  report["benchmark"] = "soak";
  report["card"] = bench::HostCard();
  report["date"] = bench::UtcDate();
  report["command"] = bench::CommandLine(argc, argv);
  report["config"] = {{"streams", streams},
                      {"seconds", seconds},
                      {"warmup_seconds", warmup_seconds},
                      {"models", {kModels[0], kModels[1]}},
                      {"backend", "cpu"},
                      {"cpu_cores", std::thread::hardware_concurrency()}};
  report["elapsed_s"] = elapsed;
  report["in_flight_at_end"] = driver.in_flight();
  report["requests_per_s"] = driver.tally().started() / seconds;
  const double growth =
      rss_at_warmup > 0 ? static_cast<double>(rss_at_end - rss_at_warmup) / rss_at_warmup : 0;
  report["rss"] = {{"at_warmup_mib", rss_at_warmup / 1048576.0},
                   {"at_end_mib", rss_at_end / 1048576.0},
                   {"peak_after_warmup_mib", rss_peak_after_warmup / 1048576.0},
                   {"growth_after_warmup", growth},
                   {"samples", rss_samples}};
  report["daemon_exit_code"] = exit_code;
  std::ofstream(out_path) << report.dump(2) << "\n";
  std::cout << report.dump(2) << "\n";
  const bool pass = report["lost"] == 0 && report["ok_without_final_message"] == 0 &&
                    growth < 0.05 && exit_code == 0;
  if (pass) {
    fs::remove_all(dir);
  } else {
    std::cerr << "soak_bench: FAILED; the daemon's log is " << log << "\n";
  }
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) { return muxserve::Run(argc, argv); }
