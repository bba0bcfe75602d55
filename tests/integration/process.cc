#include "process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace muxserve::integration {
namespace {

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                   const std::filesystem::path& stdout_path,
                                   const std::filesystem::path& stderr_path,
                                   const std::filesystem::path& stdin_path) {
  if (argv.empty()) return absl::InvalidArgumentError("SpawnProcess: empty argv");
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string out = stdout_path.string();
  const std::string err = stderr_path.string();
  const std::string in = stdin_path.string();
  const bool same_file = out == err;
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
    const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int err_fd =
        same_file ? out_fd : open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0 || err_fd < 0) _exit(126);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    const int in_fd = open(in.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) _exit(126);
    dup2(in_fd, STDIN_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

std::optional<int> WaitForExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return DecodeWaitStatus(status);
    if (done < 0) return -1;  // not our child any more: nothing to wait for
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         const std::filesystem::path& scratch_dir,
                                         std::chrono::milliseconds timeout,
                                         const std::string& input) {
  static std::atomic<int> run_counter{0};
  const int run = run_counter.fetch_add(1);
  const std::filesystem::path in_path = scratch_dir / absl::StrCat("run", run, ".in");
  const std::filesystem::path out_path = scratch_dir / absl::StrCat("run", run, ".out");
  const std::filesystem::path err_path = scratch_dir / absl::StrCat("run", run, ".err");
  std::ofstream(in_path, std::ios::binary) << input;
  absl::StatusOr<pid_t> pid = SpawnProcess(argv, out_path, err_path, in_path);
  if (!pid.ok()) return pid.status();
  std::optional<int> exit_code = WaitForExit(*pid, timeout);
  if (!exit_code) {
    KillAndReap(*pid);
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " still running after ",
                                                    timeout.count(), " ms; stderr:\n",
                                                    ReadFileOrEmpty(err_path)));
  }
  return ProcessResult{*exit_code, ReadFileOrEmpty(out_path), ReadFileOrEmpty(err_path)};
}

std::string ReadFileOrEmpty(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace muxserve::integration
