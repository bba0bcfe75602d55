// A muxserved child process for the experiment runner: started on a config with OS-chosen ports,
// ready once its ready file names them and no model is LOADING any more.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace muxserve::loadgen {

struct DaemonLaunch {
  std::filesystem::path binary;      // muxserved
  std::filesystem::path config;      // its YAML
  std::filesystem::path log;         // stdout and stderr go here
  std::filesystem::path ready_file;  // removed before the start
  double startup_timeout_s = 300;    // model loading included
};

// The muxserved beside the running executable (/proc/self/exe's folder); "muxserved" when
// /proc/self/exe cannot be read.
std::filesystem::path DaemonBesideSelf();

class DaemonProcess {
 public:
  // On failure (exit, timeout, a model FAILED) the error carries the end of the daemon's log.
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(const DaemonLaunch& launch);

  // Kills the daemon if it still runs.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // SIGTERM, then up to `timeout_s` for it to drain and exit (SIGKILL after). Returns an error
  // when it had to be killed or exited with a non-zero status.
  [[nodiscard]] absl::Status Stop(double timeout_s);

  const std::string& address() const { return address_; }  // 127.0.0.1:PORT of its gRPC API

 private:
  DaemonProcess(pid_t pid, std::filesystem::path log) : pid_(pid), log_(std::move(log)) {}
  absl::Status AwaitReady(const DaemonLaunch& launch);
  absl::Status WithLog(const absl::Status& status) const;

  pid_t pid_;
  bool running_ = true;
  std::filesystem::path log_;
  std::string address_;
};

}  // namespace muxserve::loadgen
