// What the integration tests share: a scratch directory with two synthetic models, configs
// for them, and one muxserved serving both for the tests that leave it serving.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon.h"
#include "gtest/gtest.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/v1/muxserve.grpc.pb.h"

namespace muxserve::integration {

// Two tiny Llama shapes: GQA (4 query heads over 2 KV heads) and plain multi-head attention.
inline constexpr char kModelA[] = "tiny-a";
inline constexpr char kModelB[] = "tiny-b";
inline constexpr int64_t kMaxContext = 2048;
// Long enough that a request is still running when the test acts on it.
inline constexpr int32_t kLongMaxTokens = 2000;

struct DaemonSettings {
  int64_t max_queued_requests = 1024;
  int64_t max_batch_size = 256;
  double shutdown_grace_seconds = 5.0;
};

class Serving {
 public:
  // Made on first use: the scratch directory and both models. A failure is kept and returned
  // again to every later caller.
  static absl::StatusOr<Serving*> Get();
  // Stops the shared daemon and removes the scratch directory (the tests' global tear-down).
  static void Shutdown();

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path ModelDir(const std::string& name) const { return dir_ / "models" / name; }
  // The synthetic tokenizer, the same for both models.
  const model::Tokenizer& tokenizer() const { return *tokenizer_; }

  // Writes `file_name` in the scratch directory: both models, CPU backend, ports chosen by the
  // OS, a small KV pool.
  std::filesystem::path WriteConfig(const std::string& file_name,
                                    const DaemonSettings& settings) const;
  // Starts a daemon of its own on a fresh config.
  absl::StatusOr<std::unique_ptr<DaemonProcess>> StartDaemon(const std::string& name,
                                                             const DaemonSettings& settings) const;
  // The daemon shared by every test that leaves it serving; started on first use.
  absl::StatusOr<DaemonProcess*> SharedDaemon();

 private:
  Serving() = default;
  absl::Status Init();

  std::filesystem::path dir_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<DaemonProcess> shared_daemon_;
  absl::Status shared_daemon_error_;  // a failed start is not retried by every test
};

// Everything one streaming call returned.
struct StreamResult {
  grpc::Status status;
  int messages = 0;
  int finished_messages = 0;  // messages carrying `finished`: exactly one on success
  std::string request_id;     // of the first message
  bool request_id_consistent = true;
  std::string text;
  std::vector<int32_t> token_ids;
  std::optional<v1::Finished> finished;
};

// Reads a stream to its end.
StreamResult ReadAll(grpc::ClientReaderInterface<v1::GenerateResponse>* reader);
// One Generate call, with a deadline `timeout` from now.
StreamResult Generate(v1::Muxserve::Stub& stub, const v1::GenerateRequest& request,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

v1::GenerateRequest TextRequest(const std::string& model, const std::string& prompt,
                                int32_t max_tokens);
v1::GenerateRequest GreedyTokenRequest(const std::string& model, const std::vector<int32_t>& prompt,
                                       int32_t max_tokens);

// Polls GetStats until no model has running or waiting requests.
absl::Status WaitForIdle(v1::Muxserve::Stub& stub, std::chrono::milliseconds timeout);

// The fixture of tests that need the scratch directory and models, and start any daemon they
// need themselves.
class ScratchTest : public ::testing::Test {
 protected:
  void SetUp() override;
  Serving& serving() { return *serving_; }

 private:
  Serving* serving_ = nullptr;
};

// The fixture of tests that use the shared daemon; prints its log when a test fails.
class SharedDaemonTest : public ScratchTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  DaemonProcess& daemon() { return *daemon_; }
  v1::Muxserve::Stub& api() { return daemon_->api(); }

 private:
  DaemonProcess* daemon_ = nullptr;
};

}  // namespace muxserve::integration
