#include "daemon.h"

#include <signal.h>

#include <cstdlib>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "process.h"

namespace muxserve::integration {
namespace {

constexpr std::chrono::milliseconds kPollInterval{20};

// The ready file's ports, once the daemon has written it completely.
std::optional<std::pair<int, int>> ReadPorts(const std::filesystem::path& ready_file) {
  const std::string text = ReadFileOrEmpty(ready_file);
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("grpc_port") || !json.contains("metrics_port") ||
      !json["grpc_port"].is_number_integer() || !json["metrics_port"].is_number_integer()) {
    return std::nullopt;
  }
  return std::make_pair(json["grpc_port"].get<int>(), json["metrics_port"].get<int>());
}

}  // namespace

std::filesystem::path BuildDir() {
  const char* dir = std::getenv("MUXSERVE_BUILD_DIR");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::current_path();
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const std::filesystem::path& config, const std::filesystem::path& work_dir,
    const std::string& name, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::filesystem::path binary = BuildDir() / "src" / "apps" / "muxserved";
  const std::filesystem::path ready_file = work_dir / (name + ".ready.json");
  const std::filesystem::path log_path = work_dir / (name + ".log");
  std::filesystem::remove(ready_file);
  absl::StatusOr<pid_t> pid = SpawnProcess(
      {binary.string(), "--config", config.string(), "--ready-file", ready_file.string()}, log_path,
      log_path);
  if (!pid.ok()) return pid.status();
  std::unique_ptr<DaemonProcess> daemon(new DaemonProcess(*pid, log_path));
  absl::Status ready = daemon->AwaitReady(ready_file, deadline);
  if (!ready.ok()) {
    return absl::Status(ready.code(), absl::StrCat(name, ": ", ready.message(), "\n--- ", name,
                                                   " log ---\n", daemon->Log()));
  }
  return daemon;
}

absl::Status DaemonProcess::AwaitReady(const std::filesystem::path& ready_file,
                                       std::chrono::steady_clock::time_point deadline) {
  std::optional<std::pair<int, int>> ports;
  while (!(ports = ReadPorts(ready_file))) {
    if (std::optional<int> exit_code = WaitForExit(pid_, std::chrono::milliseconds(0))) {
      running_ = false;
      return absl::FailedPreconditionError(
          absl::StrCat("muxserved exited with ", *exit_code, " before it was ready"));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no ready file ", ready_file.string()));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  grpc_port_ = ports->first;
  metrics_port_ = ports->second;
  channel_ = grpc::CreateChannel(grpc_address(), grpc::InsecureChannelCredentials());
  api_ = v1::Muxserve::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);

  grpc::Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(kApiHealthService);
    grpc::health::v1::HealthCheckResponse response;
    last = health_->Check(&context, request, &response);
    if (last.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("health of ", kApiHealthService, " never SERVING; last status ",
                   static_cast<int>(last.error_code()), " ", last.error_message()));
}

DaemonProcess::~DaemonProcess() {
  if (running_) KillAndReap(pid_);
}

absl::StatusOr<int> DaemonProcess::Terminate(std::chrono::milliseconds timeout) {
  if (!running_) return absl::FailedPreconditionError("muxserved is not running");
  kill(pid_, SIGTERM);
  std::optional<int> exit_code = WaitForExit(pid_, timeout);
  running_ = false;
  if (!exit_code) {
    KillAndReap(pid_);
    return absl::DeadlineExceededError(
        absl::StrCat("muxserved still running ", timeout.count(), " ms after SIGTERM"));
  }
  return *exit_code;
}

std::string DaemonProcess::Log() const { return ReadFileOrEmpty(log_path_); }

std::string DaemonProcess::grpc_address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

}  // namespace muxserve::integration
