#include "certificates.h"

#include <chrono>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "process.h"

namespace muxserve::integration {
namespace fs = std::filesystem;

absl::StatusOr<Certificates> MakeCertificates(const fs::path& dir,
                                              const std::string& server_names) {
  std::optional<fs::path> openssl;
  for (const char* candidate : {"/usr/bin/openssl", "/usr/local/bin/openssl"}) {
    if (fs::exists(candidate)) openssl = candidate;
  }
  if (!openssl) return absl::NotFoundError("no openssl binary to make test certificates with");
  fs::create_directories(dir);
  { std::ofstream(dir / "server.ext") << "subjectAltName=" << server_names << "\n"; }
  const std::vector<std::string> new_key = {"-newkey", "ec", "-pkeyopt",
                                            "ec_paramgen_curve:prime256v1", "-nodes"};
  auto request = [&](const std::string& name, const std::string& subject) {
    std::vector<std::string> step = {"req"};
    step.insert(step.end(), new_key.begin(), new_key.end());
    step.insert(step.end(), {"-keyout", name + ".key", "-out", name + ".csr", "-subj", subject});
    return step;
  };
  auto sign = [](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> step = {"x509",        "-req",   "-in",    name + ".csr",     "-CA",
                                     "ca.crt",      "-CAkey", "ca.key", "-CAcreateserial", "-out",
                                     name + ".crt", "-days",  "2"};
    step.insert(step.end(), extra.begin(), extra.end());
    return step;
  };
  std::vector<std::string> ca = {"req", "-x509"};
  ca.insert(ca.end(), new_key.begin(), new_key.end());
  ca.insert(ca.end(),
            {"-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=muxserve test CA"});
  const std::vector<std::vector<std::string>> steps = {
      ca,
      request("server", "/CN=muxserve test server"),
      sign("server", {"-extfile", "server.ext"}),
      request("client", "/CN=muxserve test client"),
      sign("client", {}),
  };
  for (const std::vector<std::string>& step : steps) {
    std::vector<std::string> argv = {
        "/bin/sh", "-c",
        absl::StrCat("cd '", dir.string(), "' && '", openssl->string(), "' \"$@\" 2>&1"),
        "openssl"};
    argv.insert(argv.end(), step.begin(), step.end());
    ASSIGN_OR_RETURN(ProcessResult result, RunProcess(argv, dir, std::chrono::seconds(30)));
    if (result.exit_code != 0) {
      return absl::InternalError(absl::StrCat("openssl ", step[0], " failed: ", result.out));
    }
  }
  Certificates certificates;
  certificates.dir = dir;
  certificates.ca = ReadFileOrEmpty(dir / "ca.crt");
  certificates.server_cert = ReadFileOrEmpty(dir / "server.crt");
  certificates.client_cert = ReadFileOrEmpty(dir / "client.crt");
  certificates.client_key = ReadFileOrEmpty(dir / "client.key");
  return certificates;
}

}  // namespace muxserve::integration
