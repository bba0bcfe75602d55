// Child processes for the integration tests: the muxserved daemon and muxserve CLI runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace muxserve::integration {

// Starts `argv` with stdout and stderr appended to the given files (which may be the same) and
// stdin read from `stdin_path`. The child is killed when the thread that started it exits, so
// a crashed test leaves no orphan daemon behind.
absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                   const std::filesystem::path& stdout_path,
                                   const std::filesystem::path& stderr_path,
                                   const std::filesystem::path& stdin_path = "/dev/null");

// Waits up to `timeout` for `pid` to exit and reaps it. Returns the exit code (128 + signal
// number when a signal ended it), or nullopt when it is still running.
std::optional<int> WaitForExit(pid_t pid, std::chrono::milliseconds timeout);

// Kills `pid` with SIGKILL and reaps it.
void KillAndReap(pid_t pid);

struct ProcessResult {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs `argv` to completion with `input` on its stdin, capturing its output in files under
// `scratch_dir`. DEADLINE_EXCEEDED (after killing it) when it runs past `timeout`.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         const std::filesystem::path& scratch_dir,
                                         std::chrono::milliseconds timeout,
                                         const std::string& input = "");

std::string ReadFileOrEmpty(const std::filesystem::path& path);

}  // namespace muxserve::integration
