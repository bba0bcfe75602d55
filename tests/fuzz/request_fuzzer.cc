// Arbitrary protobuf bytes as a Generate or Chat request, through the checks the service runs
// before anything reaches an engine: access control and limits, sampling and id checks, prompt
// tokens or text, chat rendering and tokenization, and the engine's own request validation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "muxserve/config/config.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/server/access_control.h"
#include "muxserve/server/convert.h"
#include "muxserve/v1/muxserve.pb.h"

namespace {

using muxserve::server::AccessControl;

struct Fixture {
  std::unique_ptr<muxserve::model::Tokenizer> tokenizer;
  muxserve::model::ModelSpec spec;
  std::unique_ptr<AccessControl> access;
};

const Fixture& Get() {
  static const Fixture* fixture = [] {
    auto* made = new Fixture();
    auto tokenizer = muxserve::model::Tokenizer::Load(std::filesystem::path(MUXSERVE_SOURCE_DIR) /
                                                      "tests" / "model" / "testdata" / "gpt2");
    if (!tokenizer.ok()) std::abort();
    made->tokenizer = std::move(*tokenizer);
    made->spec.vocab_size = made->tokenizer->vocab_size();
    made->spec.max_position_embeddings = 2048;
    muxserve::config::AuthConfig auth;
    auth.tokens.push_back({"limited", "fuzz-secret", {"m"}});
    muxserve::config::LimitsConfig limits;
    limits.max_prompt_tokens = 512;
    limits.max_stop_strings = 4;
    limits.max_streams_per_client = 2;
    made->access = std::make_unique<AccessControl>(auth, limits);
    return made;
  }();
  return *fixture;
}

void Validate(const std::string& model, const std::string& request_id, std::vector<int32_t> prompt,
              const muxserve::v1::SamplingParams& params, const std::string& authorization) {
  const Fixture& fixture = Get();
  auto caller = fixture.access->Authenticate(authorization, "ipv4:127.0.0.1:1234");
  if (caller.ok()) (void)fixture.access->CheckModel(*caller, model);
  if (!fixture.access->CheckStopStrings(params.stop_size()).ok()) return;
  if (!fixture.access->CheckPromptTokens(prompt.size()).ok()) return;
  if (!muxserve::server::CheckRequestId(request_id).ok()) return;
  auto sampling = muxserve::server::ToEngineSampling(params);
  if (!sampling.ok()) return;
  muxserve::engine::Request request;
  request.id = request_id;
  request.model = model;
  request.prompt_tokens = std::move(prompt);
  request.sampling = *sampling;
  (void)muxserve::engine::ValidateRequest(request, fixture.spec, 1024);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Fixture& fixture = Get();
  // The first byte picks the RPC and the authorization header; the rest is the message.
  const uint8_t selector = data[0];
  const char* headers[] = {"", "Bearer fuzz-secret", "bearer fuzz-secreT", "Basic x"};
  const std::string authorization = headers[(selector >> 1) & 3];
  if ((selector & 1) == 0) {
    muxserve::v1::GenerateRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    std::vector<int32_t> prompt;
    if (request.prompt_case() == muxserve::v1::GenerateRequest::kText) {
      prompt = fixture.tokenizer->Encode(request.text(), /*add_bos=*/true);
    } else if (request.prompt_case() == muxserve::v1::GenerateRequest::kTokenIds) {
      auto ids = muxserve::server::ToPromptTokens(request.token_ids(), fixture.spec.vocab_size);
      if (!ids.ok()) return 0;
      prompt = std::move(*ids);
    }
    Validate(request.model(), request.request_id(), std::move(prompt), request.sampling(),
             authorization);
  } else {
    muxserve::v1::ChatRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    auto chat_template =
        muxserve::model::ChatTemplate::FromName((selector & 8) != 0 ? "llama3" : "chatml");
    if (!chat_template.ok()) std::abort();
    auto prompt = chat_template->Render(muxserve::server::ToChatMessages(request.messages()),
                                        /*add_generation_prompt=*/true, "<s>");
    if (!prompt.ok()) return 0;
    Validate(request.model(), request.request_id(),
             fixture.tokenizer->Encode(*prompt, /*add_bos=*/false), request.sampling(),
             authorization);
  }
  return 0;
}
