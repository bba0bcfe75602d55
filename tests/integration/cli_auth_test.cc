// The muxserve CLI against a daemon that wants a bearer token over mutual TLS: --token,
// --token-file, $MUXSERVE_TOKEN, --tls-ca, --tls-cert/--tls-key and --tls-server-name.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"
#include "certificates.h"
#include "process.h"
#include "serving.h"

namespace muxserve::integration {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "cli-secret-5e0b7d21c4";
// The only name in the server's certificate: clients dialing 127.0.0.1 must name it.
constexpr char kServerName[] = "muxserve.test";
constexpr std::chrono::seconds kCliTimeout{30};

// One muxserved with tokens and mutual TLS for every test of the suite. DaemonProcess dials in
// plaintext, so this one is started here and known ready by its ready file.
class CliAuthTest : public ScratchTest {
 protected:
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      if (!WaitForExit(pid_, std::chrono::seconds(15))) KillAndReap(pid_);
      pid_ = 0;
    }
  }

  void SetUp() override {
    ScratchTest::SetUp();
    if (HasFatalFailure() || pid_ > 0) return;
    certs_ = serving().dir() / "cli-tls";
    const absl::StatusOr<Certificates> made =
        MakeCertificates(certs_, absl::StrCat("DNS:", kServerName));
    if (absl::IsNotFound(made.status())) GTEST_SKIP() << made.status();
    ASSERT_TRUE(made.ok()) << made.status();
    { std::ofstream(certs_ / "token") << kSecret << "\n"; }
    { std::ofstream(certs_ / "wrong-token") << "not-the-secret\n"; }

    const fs::path config = serving().dir() / "cli-auth.yaml";
    {
      std::ofstream out(config);
      out << "server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: 127.0.0.1:0\n"
          << "  shutdown_grace_seconds: 2\n"
          << "runtime:\n  backend: cpu\n  cpu_threads: 1\n"
          << "kv_cache:\n  memory: 16MiB\n"
          << "auth:\n  tokens:\n    - name: cli\n      token: " << kSecret << "\n"
          << "  tls:\n    cert: " << (certs_ / "server.crt").string()
          << "\n    key: " << (certs_ / "server.key").string()
          << "\n    client_ca: " << (certs_ / "ca.crt").string() << "\n"
          << "models:\n  - name: " << kModelA
          << "\n    path: " << serving().ModelDir(kModelA).string() << "\n";
    }
    log_ = serving().dir() / "cli-auth.log";
    const fs::path ready = serving().dir() / "cli-auth.ready.json";
    fs::remove(ready);
    absl::StatusOr<pid_t> pid =
        SpawnProcess({(BuildDir() / "src" / "apps" / "muxserved").string(), "--config",
                      config.string(), "--ready-file", ready.string()},
                     log_, log_);
    ASSERT_TRUE(pid.ok()) << pid.status();
    pid_ = *pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
      const nlohmann::json json =
          nlohmann::json::parse(ReadFileOrEmpty(ready), nullptr, /*allow_exceptions=*/false);
      if (json.is_object() && json.contains("grpc_port") && json["grpc_port"].is_number()) {
        port_ = json["grpc_port"].get<int>();
      } else {
        ASSERT_FALSE(WaitForExit(pid_, std::chrono::milliseconds(20)).has_value())
            << ReadFileOrEmpty(log_);
      }
    }
    ASSERT_NE(port_, 0) << "no ready file:\n" << ReadFileOrEmpty(log_);
  }

  void TearDown() override {
    if (HasFailure()) std::cerr << "--- cli-auth log ---\n" << ReadFileOrEmpty(log_);
  }

  // The flags that reach this daemon, less the token.
  std::vector<std::string> TlsFlags() const {
    return {"--addr",
            absl::StrCat("127.0.0.1:", port_),
            "--tls-ca",
            (certs_ / "ca.crt").string(),
            "--tls-cert",
            (certs_ / "client.crt").string(),
            "--tls-key",
            (certs_ / "client.key").string(),
            "--tls-server-name",
            kServerName};
  }

  // `muxserve <command> <flags...>`, with `environment` (NAME=value) set for it.
  ProcessResult RunCli(const std::vector<std::string>& command, std::vector<std::string> flags,
                       const std::vector<std::string>& environment = {}) {
    std::vector<std::string> argv = {"/usr/bin/env"};
    argv.insert(argv.end(), environment.begin(), environment.end());
    argv.push_back((BuildDir() / "src" / "apps" / "muxserve").string());
    argv.insert(argv.end(), command.begin(), command.end());
    argv.insert(argv.end(), flags.begin(), flags.end());
    absl::StatusOr<ProcessResult> result = RunProcess(argv, serving().dir(), kCliTimeout);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return ProcessResult{.exit_code = -1, .out = {}, .err = {}};
    // The secret is never echoed, whatever happened.
    EXPECT_THAT(result->out + result->err, Not(HasSubstr(kSecret)));
    return *result;
  }

  std::vector<std::string> With(std::vector<std::string> flags,
                                const std::vector<std::string>& more) const {
    flags.insert(flags.end(), more.begin(), more.end());
    return flags;
  }

  static pid_t pid_;
  static int port_;
  static fs::path certs_;
  static fs::path log_;
};
pid_t CliAuthTest::pid_ = 0;
int CliAuthTest::port_ = 0;
fs::path CliAuthTest::certs_;
fs::path CliAuthTest::log_;

TEST_F(CliAuthTest, TokenFileOverMutualTlsSucceeds) {
  const ProcessResult models =
      RunCli({"models"}, With(TlsFlags(), {"--token-file", (certs_ / "token").string()}));
  EXPECT_EQ(models.exit_code, 0) << models.err;
  EXPECT_THAT(models.out, HasSubstr(kModelA));

  const ProcessResult generate =
      RunCli({"generate", "--model", kModelA, "--prompt", "Hello", "--max-tokens", "3"},
             With(TlsFlags(), {"--token", kSecret}));
  EXPECT_EQ(generate.exit_code, 0) << generate.err;
  EXPECT_THAT(generate.err, HasSubstr("completion_tokens: 3"));
}

TEST_F(CliAuthTest, BenchRunsOverTheSameChannel) {
  const fs::path out = serving().dir() / "cli-auth-bench-ok";
  const ProcessResult bench =
      RunCli({"bench", "--out", out.string(), "--lengths", "fixed:8,2", "--rate-scale", "20",
              "--requests", "3", "--probe-lengths", "8", "--probe-output", "2", "--probe-repeats",
              "1", "--quiet", "--no-plots"},
             With(TlsFlags(), {"--token-file", (certs_ / "token").string()}));
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_TRUE(fs::exists(out / "summary.json"));
}

TEST_F(CliAuthTest, TokenFromTheEnvironment) {
  const ProcessResult stats =
      RunCli({"stats"}, TlsFlags(), {absl::StrCat("MUXSERVE_TOKEN=", kSecret)});
  EXPECT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_THAT(stats.out, HasSubstr(kModelA));
}

TEST_F(CliAuthTest, WrongOrMissingTokenIsUnauthenticated) {
  const ProcessResult wrong =
      RunCli({"models"}, With(TlsFlags(), {"--token-file", (certs_ / "wrong-token").string()}));
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("not-the-secret")));

  const ProcessResult missing = RunCli({"stats"}, TlsFlags());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("UNAUTHENTICATED"));

  // bench talks over the same channel: it stops at its first call.
  const ProcessResult bench =
      RunCli({"bench", "--out", (serving().dir() / "cli-auth-bench").string()},
             With(TlsFlags(), {"--token", "wrong"}));
  EXPECT_NE(bench.exit_code, 0);
  EXPECT_THAT(bench.err, HasSubstr("unknown bearer token"));
}

TEST_F(CliAuthTest, TlsIsVerified) {
  const std::vector<std::string> token = {"--token", kSecret};
  // Plaintext, no client certificate, or the address's name instead of the certificate's: all
  // refused before any call is made.
  const ProcessResult plaintext =
      RunCli({"models"}, With({"--addr", absl::StrCat("127.0.0.1:", port_)}, token));
  EXPECT_EQ(plaintext.exit_code, 1);
  EXPECT_THAT(plaintext.err, HasSubstr("UNAVAILABLE"));

  std::vector<std::string> no_client_cert = {"--addr",
                                             absl::StrCat("127.0.0.1:", port_),
                                             "--tls-ca",
                                             (certs_ / "ca.crt").string(),
                                             "--tls-server-name",
                                             kServerName};
  EXPECT_EQ(RunCli({"models"}, With(no_client_cert, token)).exit_code, 1);

  std::vector<std::string> no_server_name = TlsFlags();
  no_server_name.resize(no_server_name.size() - 2);
  EXPECT_EQ(RunCli({"models"}, With(no_server_name, token)).exit_code, 1);

  // Unreadable files are named; a client key needs its certificate.
  const ProcessResult missing_ca =
      RunCli({"models"}, {"--addr", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.crt"});
  EXPECT_EQ(missing_ca.exit_code, 1);
  EXPECT_THAT(missing_ca.err, HasSubstr("/nonexistent/ca.crt"));
  EXPECT_NE(RunCli({"models"}, {"--tls-key", (certs_ / "client.key").string()}).exit_code, 0);
}

}  // namespace
}  // namespace muxserve::integration
