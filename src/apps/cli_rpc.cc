#include "cli_rpc.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli_channel.h"
#include "cli_table.h"
#include "fmt/core.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/v1/muxserve.grpc.pb.h"

namespace muxserve::cli {
namespace {

namespace pb = ::muxserve::v1;
using Clock = std::chrono::steady_clock;

// Unary calls (models, stats, abort) give up after this long rather than hang on a stuck server.
constexpr std::chrono::seconds kUnaryDeadline{10};

struct SamplingFlags {
  int32_t max_tokens = 0;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Options whose presence matters: the proto leaves them unset when not given.
  CLI::Option* temperature_option = nullptr;
  CLI::Option* top_p_option = nullptr;
  CLI::Option* seed_option = nullptr;
};

// What every streaming call takes besides its prompt.
struct StreamFlags {
  ChannelFlags connection;
  SamplingFlags sampling;
  std::string model;
  std::string request_id;
  double timeout_seconds = 0;
  bool show_ids = false;
};

struct GenerateFlags {
  StreamFlags stream;
  std::string prompt;
  std::vector<int32_t> token_ids;
};

struct ChatFlags {
  StreamFlags stream;
  std::string system;
  std::vector<std::string> messages;
};

void AddStreamFlags(CLI::App* command, StreamFlags* flags) {
  AddChannelFlags(command, &flags->connection);
  command->add_option("--model", flags->model, "Name of the model to use")->required();
  SamplingFlags& sampling = flags->sampling;
  command
      ->add_option("--max-tokens", sampling.max_tokens,
                   "Tokens to generate at most (0: the server's default)")
      ->check(CLI::NonNegativeNumber);
  sampling.temperature_option =
      command->add_option("--temperature", sampling.temperature, "0 is greedy (default 1)");
  sampling.top_p_option =
      command->add_option("--top-p", sampling.top_p, "Nucleus sampling mass in (0, 1]");
  command->add_option("--top-k", sampling.top_k, "Sample among the K likeliest tokens (0: all)");
  sampling.seed_option = command->add_option("--seed", sampling.seed, "Sampling seed");
  command->add_option("--stop", sampling.stop, "Stop before this string (repeatable)")
      ->allow_extra_args(false);
  command
      ->add_option("--stop-token-id", sampling.stop_token_ids,
                   "Stop after this token id (repeatable)")
      ->allow_extra_args(false);
  command->add_flag("--ignore-eos", sampling.ignore_eos, "Keep generating past end-of-sequence");
  command->add_option("--request-id", flags->request_id, "Id for abort (the server makes one)");
  command
      ->add_option("--timeout", flags->timeout_seconds, "Deadline of the call in seconds (0: none)")
      ->check(CLI::NonNegativeNumber);
  command->add_flag("--show-ids", flags->show_ids, "Also print the generated token ids");
}

void FillSampling(const SamplingFlags& flags, pb::SamplingParams* sampling) {
  sampling->set_max_tokens(flags.max_tokens);
  if (flags.temperature_option->count() > 0) sampling->set_temperature(flags.temperature);
  if (flags.top_p_option->count() > 0) sampling->set_top_p(flags.top_p);
  sampling->set_top_k(flags.top_k);
  if (flags.seed_option->count() > 0) sampling->set_seed(flags.seed);
  for (const std::string& stop : flags.stop) sampling->add_stop(stop);
  for (int32_t id : flags.stop_token_ids) sampling->add_stop_token_ids(id);
  sampling->set_ignore_eos(flags.ignore_eos);
}

// Null, with the reason printed, when the channel's files cannot be read.
std::unique_ptr<pb::Muxserve::Stub> Connect(const ChannelFlags& flags) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(flags);
  if (!channel.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(channel.status().message()));
    return nullptr;
  }
  return pb::Muxserve::NewStub(*std::move(channel));
}

// gRPC status codes share their numbers with absl's, which can name them.
void PrintRpcError(const grpc::Status& status) {
  fmt::print(stderr, "error: {}: {}\n",
             absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
             status.error_message());
}

std::string FinishReasonName(pb::FinishReason reason) {
  switch (reason) {
    case pb::STOP:
      return "stop";
    case pb::LENGTH:
      return "length";
    case pb::ABORT:
      return "abort";
    case pb::ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

void SetDeadline(double seconds, grpc::ClientContext* context) {
  if (seconds > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(seconds)));
  }
}

struct StreamOutcome {
  grpc::Status status;
  std::string text;
  bool finished = false;
  pb::Finished final;
};

// Writes text deltas to stdout as they arrive and the summary line to stderr.
StreamOutcome ReadStream(grpc::ClientReaderInterface<pb::GenerateResponse>* reader,
                         Clock::time_point start, bool show_ids) {
  StreamOutcome outcome;
  std::vector<int32_t> ids;
  std::optional<Clock::time_point> first_token;
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
    if (!first_token && response.token_ids_size() > 0) first_token = Clock::now();
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
    if (!response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
      outcome.text += response.text();
    }
    if (response.has_finished()) {
      outcome.finished = true;
      outcome.final = response.finished();
    }
  }
  outcome.status = reader->Finish();
  const Clock::time_point end = Clock::now();
  if (!outcome.text.empty() && outcome.text.back() != '\n') std::fputc('\n', stdout);
  if (show_ids) {
    std::string joined;
    for (int32_t id : ids) joined += (joined.empty() ? "" : ",") + std::to_string(id);
    fmt::print(stdout, "token_ids: {}\n", joined);
  }
  std::fflush(stdout);
  if (!outcome.status.ok()) {
    PrintRpcError(outcome.status);
    return outcome;
  }
  if (!outcome.finished) {
    fmt::print(stderr, "error: the stream ended without a final message\n");
    return outcome;
  }
  const double seconds = std::chrono::duration<double>(end - start).count();
  const pb::Usage& usage = outcome.final.usage();
  std::string summary = fmt::format("[finish_reason: {}, prompt_tokens: {}, completion_tokens: {}",
                                    FinishReasonName(outcome.final.reason()), usage.prompt_tokens(),
                                    usage.completion_tokens());
  if (first_token) {
    summary += fmt::format(", ttft: {:.1f} ms",
                           std::chrono::duration<double, std::milli>(*first_token - start).count());
  }
  if (seconds > 0) {
    summary += fmt::format(", {:.1f} tokens/s", usage.completion_tokens() / seconds);
  }
  if (outcome.final.reason() == pb::ERROR) {
    summary += fmt::format(", error: {}", outcome.final.error_message());
  }
  fmt::print(stderr, "{}]\n", summary);
  return outcome;
}

bool Succeeded(const StreamOutcome& outcome) {
  return outcome.status.ok() && outcome.finished && outcome.final.reason() != pb::ERROR;
}

int RunGenerate(const GenerateFlags& flags) {
  const StreamFlags& stream = flags.stream;
  pb::GenerateRequest request;
  request.set_model(stream.model);
  request.set_request_id(stream.request_id);
  if (!flags.token_ids.empty()) {
    for (int32_t id : flags.token_ids) request.mutable_token_ids()->add_ids(id);
  } else {
    request.set_text(flags.prompt);
  }
  FillSampling(stream.sampling, request.mutable_sampling());

  auto stub = Connect(stream.connection);
  if (stub == nullptr) return 1;
  grpc::ClientContext context;
  SetDeadline(stream.timeout_seconds, &context);
  const Clock::time_point start = Clock::now();
  auto reader = stub->Generate(&context, request);
  return Succeeded(ReadStream(reader.get(), start, stream.show_ids)) ? 0 : 1;
}

// One user turn: sends the conversation so far and appends the streamed reply to it.
bool ChatTurn(pb::Muxserve::Stub* stub, const StreamFlags& flags, const std::string& request_id,
              pb::ChatRequest* request) {
  request->set_request_id(request_id);
  grpc::ClientContext context;
  SetDeadline(flags.timeout_seconds, &context);
  const Clock::time_point start = Clock::now();
  auto reader = stub->Chat(&context, *request);
  StreamOutcome outcome = ReadStream(reader.get(), start, flags.show_ids);
  if (!Succeeded(outcome)) return false;
  pb::ChatMessage* reply = request->add_messages();
  reply->set_role("assistant");
  reply->set_content(outcome.text);
  return true;
}

int RunChat(const ChatFlags& flags) {
  const StreamFlags& stream = flags.stream;
  pb::ChatRequest request;
  request.set_model(stream.model);
  FillSampling(stream.sampling, request.mutable_sampling());
  if (!flags.system.empty()) {
    pb::ChatMessage* system = request.add_messages();
    system->set_role("system");
    system->set_content(flags.system);
  }
  auto stub = Connect(stream.connection);
  if (stub == nullptr) return 1;
  int turn = 0;
  // A client-chosen id stays unique across turns by its turn number.
  auto next_request_id = [&]() {
    ++turn;
    if (stream.request_id.empty() || turn == 1) return stream.request_id;
    return fmt::format("{}-{}", stream.request_id, turn);
  };
  auto send = [&](const std::string& content) {
    pb::ChatMessage* user = request.add_messages();
    user->set_role("user");
    user->set_content(content);
    return ChatTurn(stub.get(), stream, next_request_id(), &request);
  };

  if (!flags.messages.empty()) {
    for (const std::string& message : flags.messages) {
      if (!send(message)) return 1;
    }
    return 0;
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;
  std::string line;
  while (true) {
    if (interactive) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (!send(line)) return 1;
  }
  return 0;
}

int RunModels(const ChannelFlags& flags) {
  auto stub = Connect(flags);
  if (stub == nullptr) return 1;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
  pb::ListModelsResponse response;
  grpc::Status status = stub->ListModels(&context, pb::ListModelsRequest(), &response);
  if (!status.ok()) {
    PrintRpcError(status);
    return 1;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::ModelInfo& model : response.models()) {
    rows.push_back({model.name(), pb::ModelInfo::State_Name(model.state()), model.unit(),
                    model.dtype(), std::to_string(model.max_context()),
                    model.chat_template().empty() ? "-" : model.chat_template(),
                    model.error_message()});
  }
  PrintTable(stdout, {"NAME", "STATE", "UNIT", "DTYPE", "MAX_CONTEXT", "CHAT_TEMPLATE", "ERROR"},
             rows);
  return 0;
}

int RunStats(const ChannelFlags& flags) {
  auto stub = Connect(flags);
  if (stub == nullptr) return 1;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
  pb::GetStatsResponse response;
  grpc::Status status = stub->GetStats(&context, pb::GetStatsRequest(), &response);
  if (!status.ok()) {
    PrintRpcError(status);
    return 1;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::ModelStats& model : response.models()) {
    rows.push_back({model.name(), model.unit(), std::to_string(model.running()),
                    std::to_string(model.waiting()),
                    fmt::format("{}/{}/{}", model.kv_blocks_used(), model.kv_blocks_quota(),
                                model.kv_blocks_total()),
                    std::to_string(model.requests_finished()),
                    std::to_string(model.prompt_tokens()), std::to_string(model.generated_tokens()),
                    std::to_string(model.preemptions())});
  }
  PrintTable(stdout,
             {"NAME", "UNIT", "RUNNING", "WAITING", "KV_BLOCKS(USED/QUOTA/TOTAL)", "FINISHED",
              "PROMPT_TOKENS", "GENERATED_TOKENS", "PREEMPTIONS"},
             rows);
  return 0;
}

int RunAbort(const ChannelFlags& flags, const std::string& request_id) {
  auto stub = Connect(flags);
  if (stub == nullptr) return 1;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
  pb::AbortRequest request;
  request.set_request_id(request_id);
  pb::AbortResponse response;
  grpc::Status status = stub->Abort(&context, request, &response);
  if (!status.ok()) {
    PrintRpcError(status);
    return 1;
  }
  fmt::print("aborted {}\n", request_id);
  return 0;
}

}  // namespace

void AddRpcCommands(CLI::App& app, int* exit_code) {
  auto generate_flags = std::make_shared<GenerateFlags>();
  CLI::App* generate =
      app.add_subcommand("generate", "Stream a completion of a prompt from muxserved");
  AddStreamFlags(generate, &generate_flags->stream);
  CLI::Option_group* prompt = generate->add_option_group("prompt", "What to complete");
  prompt->add_option("--prompt", generate_flags->prompt, "Prompt text");
  prompt->add_option("--token-ids", generate_flags->token_ids, "Prompt token ids, e.g. 1,2,3")
      ->delimiter(',');
  prompt->require_option(1);
  generate->callback([generate_flags, exit_code] { *exit_code = RunGenerate(*generate_flags); });

  auto chat_flags = std::make_shared<ChatFlags>();
  CLI::App* chat = app.add_subcommand(
      "chat", "Chat with a model: each --message is a user turn, else one turn per stdin line");
  AddStreamFlags(chat, &chat_flags->stream);
  chat->add_option("--system", chat_flags->system, "System prompt");
  chat->add_option("--message", chat_flags->messages, "A user turn (repeatable)")
      ->allow_extra_args(false);
  chat->callback([chat_flags, exit_code] { *exit_code = RunChat(*chat_flags); });

  auto models_flags = std::make_shared<ChannelFlags>();
  CLI::App* models = app.add_subcommand("models", "List the served models");
  AddChannelFlags(models, models_flags.get());
  models->callback([models_flags, exit_code] { *exit_code = RunModels(*models_flags); });

  auto stats_flags = std::make_shared<ChannelFlags>();
  CLI::App* stats = app.add_subcommand("stats", "Show per-model serving statistics");
  AddChannelFlags(stats, stats_flags.get());
  stats->callback([stats_flags, exit_code] { *exit_code = RunStats(*stats_flags); });

  auto abort_flags = std::make_shared<ChannelFlags>();
  auto abort_id = std::make_shared<std::string>();
  CLI::App* abort = app.add_subcommand("abort", "Abort a running request by its id");
  AddChannelFlags(abort, abort_flags.get());
  abort->add_option("--request-id", *abort_id, "Id of the request to abort")->required();
  abort->callback(
      [abort_flags, abort_id, exit_code] { *exit_code = RunAbort(*abort_flags, *abort_id); });
}

}  // namespace muxserve::cli
