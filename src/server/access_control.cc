#include "muxserve/server/access_control.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "muxserve/common/status.h"

namespace muxserve::server {

struct AccessControl::StreamSlot::Counts {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, int64_t> open ABSL_GUARDED_BY(mu);
};

bool Caller::MayUse(std::string_view model) const {
  return models.empty() || std::find(models.begin(), models.end(), model) != models.end();
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t length = std::max(a.size(), b.size());
  unsigned difference = a.size() ^ b.size();
  for (size_t i = 0; i < length; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    difference |= x ^ y;
  }
  return difference == 0;
}

std::string PeerHost(std::string_view peer) {
  const size_t colon = peer.rfind(':');
  const size_t scheme = peer.find(':');
  // "unix:/path" has no port.
  if (colon == std::string_view::npos || colon == scheme) return std::string(peer);
  return std::string(peer.substr(0, colon));
}

void AccessControl::StreamSlot::Release() {
  if (counts_ == nullptr) return;
  {
    absl::MutexLock lock(&counts_->mu);
    auto it = counts_->open.find(caller_);
    if (it != counts_->open.end() && --it->second == 0) counts_->open.erase(it);
  }
  counts_.reset();
}

AccessControl::AccessControl(config::AuthConfig auth, config::LimitsConfig limits)
    : auth_(std::move(auth)), limits_(limits), counts_(std::make_shared<StreamSlot::Counts>()) {}

absl::StatusOr<Caller> AccessControl::Authenticate(std::string_view authorization,
                                                   std::string_view peer) const {
  if (auth_.tokens.empty()) return Caller{PeerHost(peer), {}};
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing credentials: send the metadata 'authorization: Bearer <token>'");
  }
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(AsAbsl(authorization.substr(0, kScheme.size())), AsAbsl(kScheme))) {
    return absl::UnauthenticatedError(
        "malformed 'authorization' metadata: expected 'Bearer <token>'");
  }
  const absl::string_view stripped =
      absl::StripAsciiWhitespace(AsAbsl(authorization.substr(kScheme.size())));
  const std::string_view presented(stripped.data(), stripped.size());
  // Every token is compared, so the time taken does not tell which one (if any) matched.
  const config::AuthToken* match = nullptr;
  for (const config::AuthToken& token : auth_.tokens) {
    if (ConstantTimeEquals(presented, token.secret)) match = &token;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  return Caller{match->name, match->models};
}

absl::Status AccessControl::CheckModel(const Caller& caller, std::string_view model) const {
  if (caller.MayUse(model)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("model: token '", caller.name, "' may not use model '", AsAbsl(model), "'"));
}

absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> AccessControl::AcquireStream(
    const Caller& caller) {
  if (limits_.max_streams_per_client > 0) {
    absl::MutexLock lock(&counts_->mu);
    int64_t& open = counts_->open[caller.name];
    if (open >= limits_.max_streams_per_client) {
      return absl::ResourceExhaustedError(
          absl::StrCat("client '", caller.name, "' already has ", open,
                       " streams open (limits.max_streams_per_client)"));
    }
    ++open;
  }
  return std::shared_ptr<StreamSlot>(
      new StreamSlot(limits_.max_streams_per_client > 0 ? counts_ : nullptr, caller.name));
}

absl::Status AccessControl::CheckStopStrings(int count) const {
  if (limits_.max_stop_strings > 0 && count > limits_.max_stop_strings) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.stop: ", count, " stop strings, at most ", limits_.max_stop_strings,
                     " (limits.max_stop_strings)"));
  }
  return absl::OkStatus();
}

absl::Status AccessControl::CheckPromptTokens(size_t count) const {
  if (limits_.max_prompt_tokens > 0 && static_cast<int64_t>(count) > limits_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", count, " tokens, at most ",
                                                   limits_.max_prompt_tokens,
                                                   " (limits.max_prompt_tokens)"));
  }
  return absl::OkStatus();
}

}  // namespace muxserve::server
