// A muxserved child process for the integration tests: started from a YAML config, ready once
// its ready file names its ports and grpc.health.v1 reports the API SERVING.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/v1/muxserve.grpc.pb.h"

namespace muxserve::integration {

// The health service name of the muxserve.v1 API as a whole.
inline constexpr char kApiHealthService[] = "muxserve.v1.Muxserve";

// The muxserved binary of the build under test ($MUXSERVE_BUILD_DIR/src/apps/muxserved).
std::filesystem::path BuildDir();

class DaemonProcess {
 public:
  // Starts muxserved with `config`, logging to `work_dir`/<name>.log, and waits up to `timeout`
  // for it to serve. On failure the error carries the daemon's log.
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(const std::filesystem::path& config,
                                                              const std::filesystem::path& work_dir,
                                                              const std::string& name,
                                                              std::chrono::milliseconds timeout);

  // Kills the daemon if it still runs.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Sends SIGTERM and waits up to `timeout` for the exit code; DEADLINE_EXCEEDED (after
  // SIGKILL) when it does not exit in time.
  absl::StatusOr<int> Terminate(std::chrono::milliseconds timeout);

  std::string Log() const;
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string grpc_address() const;
  v1::Muxserve::Stub& api() { return *api_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  DaemonProcess(pid_t pid, std::filesystem::path log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  absl::Status AwaitReady(const std::filesystem::path& ready_file,
                          std::chrono::steady_clock::time_point deadline);

  pid_t pid_;
  bool running_ = true;
  std::filesystem::path log_path_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Muxserve::Stub> api_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace muxserve::integration
