// Faults end to end, each against a muxserved of its own: clients that vanish mid-stream,
// deadlines that pass while queued and while decoding, abort storms, a KV pool far too small for
// the load, a model whose weights are corrupt, and SIGTERM while models load or streams run.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "process.h"
#include "serving.h"

namespace muxserve::integration {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(15);

struct ModelLine {
  std::string name;
  fs::path path;
  std::string synthetic;  // a flow map of the synthetic shape, used when `path` is empty
};

// A config of its own: CPU backend, free ports, the given KV pool and batch limit.
fs::path WriteFaultConfig(const Serving& serving, const std::string& name,
                          const std::vector<ModelLine>& models, const std::string& kv_cache,
                          int max_batch_size) {
  const fs::path path = serving.dir() / (name + ".yaml");
  std::ofstream out(path);
  out << "server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: \"\"\n"
      << "  shutdown_grace_seconds: 2\n"
      << "  synthetic_dir: " << (serving.dir() / "synthetic").string() << "\n"
      << "runtime:\n  backend: cpu\n  cpu_threads: 1\n"
      << "kv_cache:\n"
      << kv_cache << "scheduler:\n  max_batch_size: " << max_batch_size << "\n"
      << "models:\n";
  for (const ModelLine& model : models) {
    out << "  - name: " << model.name << "\n";
    if (model.path.empty()) {
      out << "    synthetic: " << model.synthetic << "\n";
    } else {
      out << "    path: " << model.path.string() << "\n";
    }
  }
  return path;
}

class FaultTest : public ScratchTest {
 protected:
  void Start(const std::string& name, const std::vector<ModelLine>& models,
             const std::string& kv_cache = "  memory: 16MiB\n", int max_batch_size = 256) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(WriteFaultConfig(serving(), name, models, kv_cache, max_batch_size),
                             serving().dir(), name, kStartTimeout);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
  }
  std::vector<ModelLine> TinyA() { return {{kModelA, serving().ModelDir(kModelA), ""}}; }

  void TearDown() override {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_code = daemon_->Terminate(kStopTimeout);
    EXPECT_TRUE(exit_code.ok() && *exit_code == 0)
        << (exit_code.ok() ? absl::StrCat("exit code ", *exit_code)
                           : exit_code.status().ToString());
    if (HasFailure()) std::cerr << "--- daemon log ---\n" << daemon_->Log() << std::endl;
  }

  v1::Muxserve::Stub& api() { return daemon_->api(); }

  v1::GetStatsResponse Stats() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetStatsResponse stats;
    EXPECT_TRUE(api().GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    return stats;
  }

  // After a fault: nothing running or waiting, no KV block held, and a plain request completes.
  void ExpectRecovered(const std::string& model = kModelA) {
    ASSERT_TRUE(WaitForIdle(api(), std::chrono::seconds(20)).ok());
    const v1::GetStatsResponse stats = Stats();
    for (const v1::ModelStats& model : stats.models()) {
      EXPECT_EQ(model.kv_blocks_used(), 0) << model.name();
    }
    StreamResult after = Generate(api(), GreedyTokenRequest(model, {1, 2, 3}, 4));
    EXPECT_TRUE(after.status.ok()) << after.status.error_message();
    EXPECT_EQ(after.finished_messages, 1);
  }

  std::unique_ptr<DaemonProcess> daemon_;
};

v1::GenerateRequest Endless(const std::string& model, const std::string& id = "") {
  v1::GenerateRequest request = GreedyTokenRequest(model, {5, 6, 7, 8}, kLongMaxTokens);
  request.set_request_id(id);
  return request;
}

TEST_F(FaultTest, ClientsVanishingMidStreamFreeEverything) {
  ASSERT_NO_FATAL_FAILURE(Start("vanish", TinyA()));
  constexpr int kClients = 8;
  std::vector<std::thread> clients;
  std::atomic<int> streamed{0};
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      // A channel of its own, dropped with the call still open: the connection goes away.
      auto channel =
          grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials());
      auto stub = v1::Muxserve::NewStub(channel);
      auto context = std::make_unique<grpc::ClientContext>();
      auto reader = stub->Generate(context.get(), Endless(kModelA));
      v1::GenerateResponse response;
      if (reader->Read(&response)) ++streamed;
      context->TryCancel();
      reader.reset();
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(streamed.load(), kClients);
  ExpectRecovered();
}

TEST_F(FaultTest, DeadlinePassingWhileQueuedEndsTheQueuedRequest) {
  // One sequence at a time, on a model slow enough that the first request runs for many seconds:
  // the second one waits behind it.
  constexpr char kSlow[] = "slow";
  ASSERT_NO_FATAL_FAILURE(
      Start("queued-deadline",
            {{kSlow, "", "{layers: 8, hidden: 512, heads: 8, kv_heads: 2, intermediate: 1408}"}},
            "  memory: 64MiB\n", 1));
  grpc::ClientContext first_context;
  first_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto first = api().Generate(&first_context, Endless(kSlow));
  v1::GenerateResponse response;
  ASSERT_TRUE(first->Read(&response));

  const auto started = std::chrono::steady_clock::now();
  StreamResult queued =
      Generate(api(), GreedyTokenRequest(kSlow, {9, 10}, 4), std::chrono::milliseconds(500));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(queued.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(queued.messages, 0) << "it never left the queue";
  EXPECT_LT(seconds, 3.0);
  // The engine dropped it from its queue, not only the client.
  bool dropped = false;
  for (int attempt = 0; attempt < 250 && !dropped; ++attempt) {
    const v1::GetStatsResponse stats = Stats();
    dropped = stats.models_size() == 1 && stats.models(0).waiting() == 0 &&
              stats.models(0).running() == 1;
    if (!dropped) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(dropped) << Stats().ShortDebugString();

  first_context.TryCancel();
  EXPECT_EQ(ReadAll(first.get()).status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitForIdle(api(), std::chrono::seconds(20)).ok());
}

TEST_F(FaultTest, DeadlinePassingWhileDecodingEndsTheStream) {
  // A model slow enough that 2000 tokens take many seconds while the first comes within
  // milliseconds, so deadlines of one to two seconds pass mid-decode on an idle machine and on a
  // loaded one alike (timing tiny-a's sub-second streams against the machine's pace was not).
  constexpr char kSlow[] = "slow";
  ASSERT_NO_FATAL_FAILURE(
      Start("decode-deadline",
            {{kSlow, "", "{layers: 8, hidden: 512, heads: 8, kv_heads: 2, intermediate: 1408}"}},
            "  memory: 256MiB\n"));
  constexpr int kCalls = 6;
  std::vector<StreamResult> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(api(), Endless(kSlow), std::chrono::milliseconds(1000 + 200 * i));
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const StreamResult& result : results) {
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_GT(result.token_ids.size(), 0u) << "it was decoding when the deadline passed";
  }
  ExpectRecovered(kSlow);
}

TEST_F(FaultTest, AbortStormEndsEveryStream) {
  ASSERT_NO_FATAL_FAILURE(Start("abort-storm", TinyA()));
  constexpr int kStreams = 24;
  std::vector<StreamResult> results(kStreams);
  std::vector<std::thread> streams;
  std::atomic<int> started{0};
  for (int i = 0; i < kStreams; ++i) {
    streams.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto reader = api().Generate(&context, Endless(kModelA, absl::StrCat("storm-", i)));
      v1::GenerateResponse first;
      const bool got_first = reader->Read(&first);
      ++started;
      results[i] = ReadAll(reader.get());
      if (got_first)
        results[i].token_ids.insert(results[i].token_ids.begin(), first.token_ids().begin(),
                                    first.token_ids().end());
    });
  }
  while (started.load() < kStreams) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  // Every id aborted from several threads at once, plus ids that never existed.
  std::vector<std::thread> aborters;
  std::atomic<int> aborted{0};
  std::atomic<int> not_found{0};
  for (int t = 0; t < 4; ++t) {
    aborters.emplace_back([&] {
      for (int i = 0; i < kStreams + 8; ++i) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        v1::AbortRequest request;
        request.set_request_id(absl::StrCat("storm-", i));
        v1::AbortResponse response;
        const grpc::Status status = api().Abort(&context, request, &response);
        if (status.ok()) {
          ++aborted;
        } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          ++not_found;
        } else {
          ADD_FAILURE() << "Abort: " << status.error_code() << " " << status.error_message();
        }
      }
    });
  }
  for (std::thread& aborter : aborters) aborter.join();
  for (std::thread& stream : streams) stream.join();

  EXPECT_GE(aborted.load(), kStreams);
  EXPECT_GE(not_found.load(), 4 * 8);
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(absl::StrCat("stream ", i));
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    ASSERT_TRUE(results[i].finished.has_value());
    EXPECT_EQ(results[i].finished->reason(), v1::ABORT);
    EXPECT_EQ(results[i].finished->usage().completion_tokens(),
              static_cast<int32_t>(results[i].token_ids.size()));
  }
  ExpectRecovered();
}

TEST_F(FaultTest, TinyKvPoolPreemptsAndFinishesEveryRequest) {
  // 64 head blocks of 8 tokens: tiny-a (2 layers x 2 KV heads) holds 128 tokens in all; each
  // request grows to 100 tokens, so any two that overlap must preempt.
  ASSERT_NO_FATAL_FAILURE(Start("tiny-pool", TinyA(), "  memory: 64KiB\n  block_bytes: 1024\n"));
  constexpr int kCalls = 6;
  constexpr int32_t kMaxTokens = 96;
  std::vector<StreamResult> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(api(), GreedyTokenRequest(kModelA, {11, 12, 13, 14 + i}, kMaxTokens),
                            std::chrono::seconds(60));
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const StreamResult& result : results) {
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    ASSERT_TRUE(result.finished.has_value());
    EXPECT_EQ(result.finished->usage().completion_tokens(), kMaxTokens);
  }
  const v1::GetStatsResponse stats = Stats();
  ASSERT_EQ(stats.models_size(), 1);
  EXPECT_GT(stats.models(0).preemptions(), 0) << "the pool was never short";
  EXPECT_EQ(stats.models(0).kv_blocks_total(), 64);

  // One request alone larger than the pool is refused at once, naming the pool.
  StreamResult too_big = Generate(api(), GreedyTokenRequest(kModelA, {1, 2, 3}, 400));
  EXPECT_EQ(too_big.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_big.status.error_message(), HasSubstr("whole pool"));
  ExpectRecovered();
}

TEST_F(FaultTest, CorruptModelFailsAloneAndTheOthersServe) {
  // A copy of tiny-b whose weights file lost its second half.
  const fs::path broken = serving().dir() / "models" / "broken";
  fs::remove_all(broken);
  fs::copy(serving().ModelDir(kModelB), broken, fs::copy_options::recursive);
  const fs::path weights = broken / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);

  ASSERT_NO_FATAL_FAILURE(
      Start("corrupt", {{kModelA, serving().ModelDir(kModelA), ""}, {"broken", broken, ""}}));
  grpc::ClientContext list_context;
  list_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListModelsResponse listed;
  ASSERT_TRUE(api().ListModels(&list_context, v1::ListModelsRequest(), &listed).ok());
  ASSERT_EQ(listed.models_size(), 2);
  EXPECT_EQ(listed.models(0).state(), v1::ModelInfo::SERVING);
  EXPECT_EQ(listed.models(1).state(), v1::ModelInfo::FAILED);
  EXPECT_THAT(listed.models(1).error_message(), HasSubstr("model.safetensors"));

  grpc::ClientContext health_context;
  health_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest health_request;
  health_request.set_service("broken");
  HealthResponse health;
  ASSERT_TRUE(daemon_->health().Check(&health_context, health_request, &health).ok());
  EXPECT_EQ(health.status(), HealthResponse::NOT_SERVING);

  StreamResult refused = Generate(api(), GreedyTokenRequest("broken", {1, 2}, 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("broken"));
  EXPECT_THAT(refused.status.error_message(), HasSubstr("model.safetensors"));
  ExpectRecovered();
}

TEST_F(FaultTest, SigtermWhileModelsLoadExitsCleanly) {
  // A model large enough that writing and loading it takes a while.
  const fs::path config = serving().dir() / "loading.yaml";
  {
    std::ofstream out(config);
    out << "server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: \"\"\n"
        << "  synthetic_dir: " << (serving().dir() / "synthetic").string() << "\n"
        << "runtime:\n  backend: cpu\n  cpu_threads: 1\n"
        << "models:\n"
        << "  - name: " << kModelA << "\n    path: " << serving().ModelDir(kModelA).string() << "\n"
        << "  - name: big\n    synthetic: {layers: 4, hidden: 1024, heads: 8, intermediate: "
           "2816, vocab: 32000}\n"
        << "  - name: later\n    path: " << serving().ModelDir(kModelB).string() << "\n";
  }
  const fs::path ready = serving().dir() / "loading.ready.json";
  const fs::path log = serving().dir() / "loading.log";
  fs::remove(ready);
  absl::StatusOr<pid_t> pid =
      SpawnProcess({(BuildDir() / "src" / "apps" / "muxserved").string(), "--config",
                    config.string(), "--ready-file", ready.string()},
                   log, log);
  ASSERT_TRUE(pid.ok()) << pid.status();
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!fs::exists(ready) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(fs::exists(ready)) << ReadFileOrEmpty(log);
  kill(*pid, SIGTERM);
  const auto term_start = std::chrono::steady_clock::now();
  // A model being loaded is finished first (loading cannot be interrupted), so allow for it.
  std::optional<int> exit_code = WaitForExit(*pid, std::chrono::seconds(60));
  if (!exit_code) KillAndReap(*pid);
  ASSERT_TRUE(exit_code.has_value()) << "no exit 60 s after SIGTERM\n" << ReadFileOrEmpty(log);
  EXPECT_EQ(*exit_code, 0) << ReadFileOrEmpty(log);
  const std::string text = ReadFileOrEmpty(log);
  EXPECT_THAT(text, HasSubstr("stopped"));
  // The models not started yet are skipped.
  EXPECT_THAT(text, HasSubstr("model later: failed to load: the daemon shut down before loading"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("model later: serving")));
  RecordProperty("sigterm_to_exit_ms",
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - term_start)
                                      .count()));
}

TEST_F(FaultTest, SigtermUnderLoadEndsEveryStream) {
  ASSERT_NO_FATAL_FAILURE(Start("sigterm-load", TinyA()));
  constexpr int kStreams = 32;
  std::vector<StreamResult> results(kStreams);
  std::vector<std::thread> streams;
  std::atomic<int> started{0};
  for (int i = 0; i < kStreams; ++i) {
    streams.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      v1::GenerateRequest request = GreedyTokenRequest(kModelA, {3, 4, 5 + i}, 300);
      auto reader = api().Generate(&context, request);
      ++started;
      results[i] = ReadAll(reader.get());
    });
  }
  while (started.load() < kStreams) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  absl::StatusOr<int> exit_code = daemon_->Terminate(kStopTimeout);
  for (std::thread& stream : streams) stream.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  for (const StreamResult& result : results) {
    // Each ends with its final message, or with an error status: none is left hanging.
    if (result.status.ok()) {
      EXPECT_EQ(result.finished_messages, 1);
    } else {
      EXPECT_THAT(result.status.error_code(),
                  AnyOf(grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::CANCELLED,
                        grpc::StatusCode::ABORTED));
    }
  }
  if (HasFailure()) std::cerr << "--- daemon log ---\n" << daemon_->Log() << std::endl;
  daemon_.reset();
}

}  // namespace
}  // namespace muxserve::integration
