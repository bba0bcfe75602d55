#include "muxserve/server/service.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/server/convert.h"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

// One per streaming call; deletes itself in OnDone. The ResponseStream decides what to write.
class StreamReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse>,
                            public ResponseWriter {
 public:
  StreamReactor() : stream_(std::make_shared<ResponseStream>(this)) {}

  const std::shared_ptr<ResponseStream>& stream() const { return stream_; }

  void Send(const v1::GenerateResponse* response) override { StartWrite(response); }
  void SendLastAndFinish(const v1::GenerateResponse* response, grpc::Status status) override {
    StartWriteAndFinish(response, grpc::WriteOptions(), std::move(status));
  }
  void FinishCall(grpc::Status status) override { Finish(std::move(status)); }

  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override { stream_->OnCancel(); }
  void OnDone() override {
    stream_->OnDone();
    delete this;
  }

 private:
  std::shared_ptr<ResponseStream> stream_;
};

v1::ModelInfo::State ToApiState(ModelState state) {
  switch (state) {
    case ModelState::kLoading:
      return v1::ModelInfo::LOADING;
    case ModelState::kServing:
      return v1::ModelInfo::SERVING;
    case ModelState::kFailed:
      return v1::ModelInfo::FAILED;
  }
  return v1::ModelInfo::STATE_UNSPECIFIED;
}

}  // namespace

absl::Status ActiveRequests::Add(const std::string& id,
                                 std::shared_ptr<engine::CancelFlag> cancel) {
  absl::MutexLock lock(&mu_);
  if (!requests_.try_emplace(id, std::move(cancel)).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id: a request with id '", id, "' is already running"));
  }
  return absl::OkStatus();
}

void ActiveRequests::Remove(const std::string& id, const engine::CancelFlag* cancel) {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(id);
  if (it != requests_.end() && it->second.get() == cancel) requests_.erase(it);
}

absl::Status ActiveRequests::Cancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrCat("request_id: no running request with id '", id, "'"));
  }
  it->second->Cancel();
  return absl::OkStatus();
}

size_t ActiveRequests::size() const {
  absl::MutexLock lock(&mu_);
  return requests_.size();
}

MuxserveService::MuxserveService(const Router* router, Clock* clock,
                                 std::shared_ptr<AccessControl> access)
    : router_(router),
      clock_(clock),
      access_(access != nullptr
                  ? std::move(access)
                  : std::make_shared<AccessControl>(config::AuthConfig{}, config::LimitsConfig{})) {
}

absl::StatusOr<Caller> MuxserveService::Authenticate(grpc::CallbackServerContext* context) const {
  std::string_view authorization;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  return access_->Authenticate(authorization, context->peer());
}

absl::Status MuxserveService::CheckAccepting() const {
  if (!accepting_.load()) {
    return absl::UnavailableError("the server is shutting down and accepts no new requests");
  }
  return absl::OkStatus();
}

std::string MuxserveService::NewRequestId() {
  // The random part keeps ids from being guessed by other clients (Abort takes any id).
  thread_local std::mt19937 random(std::random_device{}());
  return absl::StrFormat("req-%d-%08x", next_request_number_.fetch_add(1), random());
}

grpc::ServerWriteReactor<v1::GenerateResponse>* MuxserveService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  auto* reactor = new StreamReactor();
  absl::Status status = StartGenerate(context, *request, reactor->stream());
  if (!status.ok()) {
    spdlog::debug("Generate for model '{}' rejected: {}", request->model(), status.ToString());
    reactor->stream()->Fail(ToGrpcStatus(status));
  }
  return reactor;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* MuxserveService::Chat(
    grpc::CallbackServerContext* context, const v1::ChatRequest* request) {
  auto* reactor = new StreamReactor();
  absl::Status status = StartChat(context, *request, reactor->stream());
  if (!status.ok()) {
    spdlog::debug("Chat for model '{}' rejected: {}", request->model(), status.ToString());
    reactor->stream()->Fail(ToGrpcStatus(status));
  }
  return reactor;
}

absl::Status MuxserveService::StartGenerate(grpc::CallbackServerContext* context,
                                            const v1::GenerateRequest& request,
                                            const std::shared_ptr<ResponseStream>& stream) {
  ASSIGN_OR_RETURN(const Caller caller, Authenticate(context));
  RETURN_IF_ERROR(access_->CheckModel(caller, request.model()));
  RETURN_IF_ERROR(CheckAccepting());
  RETURN_IF_ERROR(access_->CheckStopStrings(request.sampling().stop_size()));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, router_->FindServing(request.model()));
  std::vector<int32_t> prompt_tokens;
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("text: empty prompt");
      prompt_tokens = model->tokenizer->Encode(request.text(), /*add_bos=*/true);
      break;
    case v1::GenerateRequest::kTokenIds: {
      ASSIGN_OR_RETURN(prompt_tokens, ToPromptTokens(request.token_ids(),
                                                     static_cast<int32_t>(model->spec.vocab_size)));
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt: set text or token_ids");
  }
  return Submit(context, caller, *model, request.request_id(), std::move(prompt_tokens),
                request.sampling(), stream);
}

absl::Status MuxserveService::StartChat(grpc::CallbackServerContext* context,
                                        const v1::ChatRequest& request,
                                        const std::shared_ptr<ResponseStream>& stream) {
  ASSIGN_OR_RETURN(const Caller caller, Authenticate(context));
  RETURN_IF_ERROR(access_->CheckModel(caller, request.model()));
  RETURN_IF_ERROR(CheckAccepting());
  RETURN_IF_ERROR(access_->CheckStopStrings(request.sampling().stop_size()));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, router_->FindServing(request.model()));
  if (!model->chat_template) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", model->name,
                     "' has no usable chat template; use Generate, or set "
                     "chat_template for it in the daemon's config"));
  }
  if (request.messages().empty()) return absl::InvalidArgumentError("messages: empty");
  std::string bos_token;
  if (std::optional<int32_t> bos = model->tokenizer->bos_id()) {
    const int32_t bos_id = *bos;
    bos_token = model->tokenizer->Decode({&bos_id, 1}, /*skip_special=*/false);
  }
  ASSIGN_OR_RETURN(std::string prompt,
                   model->chat_template->Render(ToChatMessages(request.messages()),
                                                /*add_generation_prompt=*/true, bos_token));
  // The template wrote the BOS token itself.
  std::vector<int32_t> prompt_tokens = model->tokenizer->Encode(prompt, /*add_bos=*/false);
  return Submit(context, caller, *model, request.request_id(), std::move(prompt_tokens),
                request.sampling(), stream);
}

absl::Status MuxserveService::Submit(grpc::CallbackServerContext* context, const Caller& caller,
                                     const ModelEntry& model, const std::string& request_id,
                                     std::vector<int32_t> prompt_tokens,
                                     const v1::SamplingParams& sampling,
                                     const std::shared_ptr<ResponseStream>& stream) {
  RETURN_IF_ERROR(CheckRequestId(request_id));
  RETURN_IF_ERROR(access_->CheckPromptTokens(prompt_tokens.size()));
  engine::Request request;
  ASSIGN_OR_RETURN(request.sampling, ToEngineSampling(sampling));
  request.id = request_id.empty() ? NewRequestId() : request_id;
  request.model = model.name;
  request.prompt_tokens = std::move(prompt_tokens);
  request.deadline =
      ToSteadyDeadline(context->deadline(), std::chrono::system_clock::now(), clock_->Now());
  RETURN_IF_ERROR(engine::ValidateRequest(request, model.spec, model.max_context));

  // Held until the engine has finished the request (or it never reaches the engine).
  ASSIGN_OR_RETURN(std::shared_ptr<AccessControl::StreamSlot> slot, access_->AcquireStream(caller));
  RETURN_IF_ERROR(active_->Add(request.id, request.cancel));
  stream->Bind(request.id, request.cancel,
               [active = active_, id = request.id, cancel = request.cancel.get(), slot] {
                 active->Remove(id, cancel);
                 slot->Release();
               });
  request.sink = stream;
  const std::string id = request.id;
  const engine::CancelFlag* cancel = request.cancel.get();
  absl::Status submitted = model.engine->Submit(std::move(request));
  if (!submitted.ok()) active_->Remove(id, cancel);
  return submitted;
}

grpc::ServerUnaryReactor* MuxserveService::AnswerUnary(
    grpc::CallbackServerContext* context,
    const std::function<absl::Status(const Caller&)>& answer) const {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = Authenticate(context);
  reactor->Finish(ToGrpcStatus(caller.ok() ? answer(*caller) : caller.status()));
  return reactor;
}

grpc::ServerUnaryReactor* MuxserveService::Abort(grpc::CallbackServerContext* context,
                                                 const v1::AbortRequest* request,
                                                 v1::AbortResponse* /*response*/) {
  return AnswerUnary(context,
                     [&](const Caller&) { return active_->Cancel(request->request_id()); });
}

grpc::ServerUnaryReactor* MuxserveService::ListModels(grpc::CallbackServerContext* context,
                                                      const v1::ListModelsRequest* /*request*/,
                                                      v1::ListModelsResponse* response) {
  return AnswerUnary(context, [&](const Caller& caller) {
    for (const std::shared_ptr<const ModelEntry>& model : router_->List()) {
      if (!caller.MayUse(model->name)) continue;
      v1::ModelInfo* info = response->add_models();
      info->set_name(model->name);
      info->set_state(ToApiState(model->state));
      info->set_unit(model->unit);
      info->set_error_message(model->error);
      if (model->state == ModelState::kServing) {
        info->set_dtype(std::string(DTypeName(model->dtype)));
        info->set_max_context(model->max_context);
        if (model->chat_template)
          info->set_chat_template(std::string(model->chat_template->name()));
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MuxserveService::GetStats(grpc::CallbackServerContext* context,
                                                    const v1::GetStatsRequest* /*request*/,
                                                    v1::GetStatsResponse* response) {
  return AnswerUnary(context, [&](const Caller& caller) {
    // Each unit reports all of its models at once.
    std::vector<const engine::UnitEngine*> units;
    for (const std::shared_ptr<const ModelEntry>& model : router_->List()) {
      if (model->engine == nullptr) continue;
      if (std::find(units.begin(), units.end(), model->engine) == units.end()) {
        units.push_back(model->engine);
      }
    }
    for (const engine::UnitEngine* unit : units) {
      for (const engine::LlmStats& llm : unit->Stats()) {
        if (!caller.MayUse(llm.name)) continue;
        v1::ModelStats* stats = response->add_models();
        stats->set_name(llm.name);
        stats->set_unit(unit->name());
        stats->set_running(llm.running);
        stats->set_waiting(llm.waiting);
        stats->set_kv_blocks_used(llm.kv_blocks_used);
        stats->set_kv_blocks_quota(llm.kv_blocks_quota);
        stats->set_kv_blocks_total(llm.kv_blocks_total);
        stats->set_requests_finished(llm.requests_finished);
        stats->set_prompt_tokens(llm.prompt_tokens);
        stats->set_generated_tokens(llm.generated_tokens);
        stats->set_preemptions(llm.preemptions);
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace muxserve::server
