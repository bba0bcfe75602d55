#include "cli_channel.h"

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"

namespace muxserve::cli {
namespace {

namespace gx = ::grpc::experimental;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  if (!in || !(contents << in.rdbuf())) {
    return absl::NotFoundError(absl::StrCat("cannot read the ", what, " file '", path, "'"));
  }
  return contents.str();
}

// Adds the authorization header to every call of the channel, including those of libraries
// (the load generator) that make their own ClientContexts.
class BearerTokenInterceptor : public gx::Interceptor {
 public:
  explicit BearerTokenInterceptor(std::shared_ptr<const std::string> header)
      : header_(std::move(header)) {}
  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            gx::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  std::shared_ptr<const std::string> header_;
};

class BearerTokenInterceptorFactory : public gx::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token)
      : header_(std::make_shared<const std::string>(absl::StrCat("Bearer ", token))) {}
  gx::Interceptor* CreateClientInterceptor(gx::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(header_);
  }

 private:
  std::shared_ptr<const std::string> header_;
};

absl::StatusOr<std::string> Token(const ChannelFlags& flags) {
  if (flags.token_file.empty()) return flags.token;
  absl::StatusOr<std::string> contents = ReadWholeFile(flags.token_file, "token");
  if (!contents.ok()) return contents.status();
  // A file written by `echo` ends in a newline that is no part of the secret.
  std::string token(absl::StripAsciiWhitespace(*contents));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token file '", flags.token_file, "' is empty"));
  }
  return token;
}

bool UsesTls(const ChannelFlags& flags) {
  return flags.tls || !flags.tls_ca.empty() || !flags.tls_cert.empty() ||
         !flags.tls_server_name.empty();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const ChannelFlags& flags) {
  if (!UsesTls(flags)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;  // no CA given: the system's trusted ones
  if (!flags.tls_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadWholeFile(flags.tls_ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  if (!flags.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadWholeFile(flags.tls_cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadWholeFile(flags.tls_key, "--tls-key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

}  // namespace

void AddChannelFlags(CLI::App* command, ChannelFlags* flags) {
  command->add_option("--addr", flags->address, "Address of muxserved's gRPC endpoint")
      ->capture_default_str();
  // $MUXSERVE_TOKEN keeps the secret out of the process list, which shows every argument.
  command
      ->add_option("--token", flags->token,
                   "Bearer token for a daemon with auth.tokens")
      ->envname("MUXSERVE_TOKEN");
  command->add_option("--token-file", flags->token_file,
                      "File holding the bearer token (wins over --token)");
  command->add_flag("--tls", flags->tls, "Use TLS, trusting the system's CAs unless --tls-ca");
  command->add_option("--tls-ca", flags->tls_ca, "PEM file of the CA to verify the server with");
  CLI::Option* cert = command->add_option("--tls-cert", flags->tls_cert,
                                          "PEM client certificate, for a daemon with mutual TLS");
  CLI::Option* key =
      command->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  cert->needs(key);
  key->needs(cert);
  command->add_option("--tls-server-name", flags->tls_server_name,
                      "Name the server's certificate must carry (default: the host of --addr)");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ChannelFlags& flags) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = Credentials(flags);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::string> token = Token(flags);
  if (!token.ok()) return token.status();

  grpc::ChannelArguments arguments;
  if (!flags.tls_server_name.empty()) arguments.SetSslTargetNameOverride(flags.tls_server_name);
  std::vector<std::unique_ptr<gx::ClientInterceptorFactoryInterface>> interceptors;
  if (!token->empty()) {
    interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(*token));
  }
  return gx::CreateCustomChannelWithInterceptors(flags.address, *credentials, arguments,
                                                 std::move(interceptors));
}

}  // namespace muxserve::cli
