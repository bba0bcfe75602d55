#include "muxserve/loadgen/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/common/status.h"
#include "muxserve/v1/muxserve.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace muxserve::loadgen {
namespace {

namespace pb = ::muxserve::v1;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kPollInterval{50};
constexpr size_t kLogTailBytes = 4000;

std::string ReadFileOrEmpty(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// The exit status (128 + signal when a signal ended it) once `pid` has exited, else nullopt.
std::optional<int> ExitStatus(pid_t pid, std::chrono::milliseconds wait) {
  const auto end = Clock::now() + wait;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (done < 0) return -1;  // not our child any more
    if (Clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<int> ReadGrpcPort(const std::filesystem::path& ready_file) {
  const nlohmann::json json =
      nlohmann::json::parse(ReadFileOrEmpty(ready_file), nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("grpc_port") || !json["grpc_port"].is_number_integer()) {
    return std::nullopt;
  }
  return json["grpc_port"].get<int>();
}

}  // namespace

std::filesystem::path DaemonBesideSelf() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path("muxserved") : self.parent_path() / "muxserved";
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const DaemonLaunch& launch) {
  if (access(launch.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("muxserved not found or not executable at '", launch.binary.string(), "'"));
  }
  std::error_code ignored;  // a ready file that cannot be removed shows up as a start failure
  std::filesystem::remove(launch.ready_file, ignored);
  const std::vector<std::string> argv = {
      launch.binary.string(), "--config",     launch.config.string(),
      "--grpc-address",       "127.0.0.1:0",  "--metrics-address",
      "127.0.0.1:0",          "--ready-file", launch.ready_file.string()};
  // Prepared before fork: between fork and exec only async-signal-safe calls are allowed.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string log = launch.log.string();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The daemon dies with us, so an interrupted experiment leaves none behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) _exit(126);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  std::unique_ptr<DaemonProcess> daemon(new DaemonProcess(pid, launch.log));
  RETURN_IF_ERROR(daemon->WithLog(daemon->AwaitReady(launch)));
  return daemon;
}

absl::Status DaemonProcess::AwaitReady(const DaemonLaunch& launch) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(launch.startup_timeout_s));
  std::optional<int> port;
  while (!(port = ReadGrpcPort(launch.ready_file))) {
    if (std::optional<int> status = ExitStatus(pid_, std::chrono::milliseconds(0))) {
      running_ = false;
      return absl::FailedPreconditionError(
          absl::StrCat("muxserved exited with status ", *status, " before it was ready"));
    }
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("muxserved wrote no ready file in ", launch.startup_timeout_s, " s"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  address_ = absl::StrCat("127.0.0.1:", *port);
  auto stub =
      pb::Muxserve::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  std::string last_error = "no answer";
  while (Clock::now() < deadline) {
    if (std::optional<int> status = ExitStatus(pid_, std::chrono::milliseconds(0))) {
      running_ = false;
      return absl::FailedPreconditionError(
          absl::StrCat("muxserved exited with status ", *status, " while loading its models"));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    pb::ListModelsResponse response;
    const grpc::Status status = stub->ListModels(&context, pb::ListModelsRequest(), &response);
    if (status.ok()) {
      bool loading = false;
      for (const pb::ModelInfo& model : response.models()) {
        if (model.state() == pb::ModelInfo::FAILED) {
          return absl::FailedPreconditionError(
              absl::StrCat("model '", model.name(), "' failed to load: ", model.error_message()));
        }
        loading = loading || model.state() != pb::ModelInfo::SERVING;
      }
      if (!loading) return absl::OkStatus();
      last_error = "models still loading";
    } else {
      last_error = status.error_message();
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("muxserved not serving after ", launch.startup_timeout_s, " s: ", last_error));
}

absl::Status DaemonProcess::WithLog(const absl::Status& status) const {
  if (status.ok()) return status;
  std::string log = ReadFileOrEmpty(log_);
  if (log.size() > kLogTailBytes) log = "..." + log.substr(log.size() - kLogTailBytes);
  return absl::Status(status.code(),
                      absl::StrCat(status.message(), "\n--- ", log_.string(), " ---\n", log));
}

DaemonProcess::~DaemonProcess() {
  if (running_) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

absl::Status DaemonProcess::Stop(double timeout_s) {
  if (!running_) return absl::FailedPreconditionError("muxserved is not running");
  kill(pid_, SIGTERM);
  std::optional<int> status =
      ExitStatus(pid_, std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::duration<double>(timeout_s)));
  if (!status) {
    kill(pid_, SIGKILL);
    int ignored = 0;
    waitpid(pid_, &ignored, 0);
    running_ = false;
    return WithLog(absl::DeadlineExceededError(
        absl::StrCat("muxserved still running ", timeout_s, " s after SIGTERM; killed")));
  }
  running_ = false;
  if (*status != 0) {
    return WithLog(absl::InternalError(absl::StrCat("muxserved exited with status ", *status)));
  }
  return absl::OkStatus();
}

}  // namespace muxserve::loadgen
