#include "muxserve/loadgen/driver.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "muxserve/common/status.h"

namespace muxserve::loadgen {
namespace {

namespace pb = ::muxserve::v1;
using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

std::string StatusText(const grpc::Status& status) {
  // gRPC's status codes share their numbers with absl's, which can name them.
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                      ": ", status.error_message());
}

// How a finished stream ended: its outcome and, for errors and aborts, why.
void ClassifyEnd(const grpc::Status& status, const std::optional<pb::Finished>& finished,
                 bool cancelled_by_driver, RequestRecord* record) {
  if (cancelled_by_driver && !status.ok()) {
    record->outcome = Outcome::kAborted;
    record->error = "cancelled by the load generator at the drain deadline";
    return;
  }
  if (!status.ok()) {
    record->outcome = Outcome::kError;
    record->error = StatusText(status);
    return;
  }
  if (!finished) {
    record->outcome = Outcome::kError;
    record->error = "the stream ended without its final message";
    return;
  }
  switch (finished->reason()) {
    case pb::STOP:
    case pb::LENGTH:
      record->outcome = Outcome::kFinished;
      return;
    case pb::ABORT:
      record->outcome = Outcome::kAborted;
      record->error = "aborted by the server";
      return;
    default:
      record->outcome = Outcome::kError;
      record->error = absl::StrCat("finish reason ", pb::FinishReason_Name(finished->reason()),
                                   ": ", finished->error_message());
      return;
  }
}

class Call;

// What every call of a run shares: the clock origin, the counters, the calls still running.
class RunState {
 public:
  RunState(size_t total, Clock::time_point origin) : origin_(origin), records_(total) {}

  double Now() const { return SecondsBetween(origin_, Clock::now()); }
  Clock::time_point origin() const { return origin_; }

  void Started(Call* call) {
    absl::MutexLock lock(&mu_);
    live_.insert(call);
    ++progress_.sent;
  }
  void AddTokens(int64_t count) {
    absl::MutexLock lock(&mu_);
    progress_.output_tokens += count;
  }
  void Completed(Call* call, RequestRecord record) {
    absl::MutexLock lock(&mu_);
    live_.erase(call);
    switch (record.outcome) {
      case Outcome::kFinished:
        ++progress_.finished;
        break;
      case Outcome::kError:
        ++progress_.errors;
        break;
      case Outcome::kAborted:
        ++progress_.aborted;
        break;
    }
    records_[record.index] = std::move(record);
  }

  // Waits until every call of `total` has completed, or `timeout` passes; true when all did.
  bool AwaitAll(int64_t total, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto all_done = [this, total]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return progress_.finished + progress_.errors + progress_.aborted == total;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all_done), timeout);
  }
  void CancelLive();

  // A call's object is gone (it still runs gRPC code between Completed and its deletion).
  void Released() {
    absl::MutexLock lock(&mu_);
    ++released_;
  }
  // Waits until `total` calls are deleted: their contexts must go before the channel does.
  void AwaitReleased(int64_t total) {
    absl::MutexLock lock(&mu_);
    auto all_released = [this, total]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return released_ == total;
    };
    mu_.Await(absl::Condition(&all_released));
  }

  Progress Snapshot() {
    absl::MutexLock lock(&mu_);
    return progress_;
  }
  std::vector<RequestRecord> TakeRecords() {
    absl::MutexLock lock(&mu_);
    return std::move(records_);
  }

 private:
  const Clock::time_point origin_;
  absl::Mutex mu_;
  std::set<Call*> live_ ABSL_GUARDED_BY(mu_);
  Progress progress_ ABSL_GUARDED_BY(mu_);
  std::vector<RequestRecord> records_ ABSL_GUARDED_BY(mu_);
  int64_t released_ ABSL_GUARDED_BY(mu_) = 0;
};

// One streaming Generate call; deletes itself when gRPC and every canceller are done with it.
class Call final : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  Call(RunState* state, int64_t index, const RequestSpec& spec, pb::GenerateRequest request)
      : state_(state), request_(std::move(request)) {
    record_.index = index;
    record_.model = spec.model;
    record_.arrival_s = spec.arrival_s;
    record_.prompt_tokens = spec.prompt_tokens;
    record_.output_tokens_requested = request_.sampling().max_tokens();
  }
  ~Call() override { state_->Released(); }

  void Start(pb::Muxserve::Stub& stub, double timeout_s) {
    if (timeout_s > 0) {
      // The deadline counts from the scheduled arrival, like the latencies.
      context_.set_deadline(DeadlineIn(record_.arrival_s + timeout_s - state_->Now()));
    }
    record_.send_s = state_->Now();
    state_->Started(this);
    stub.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  // Holders of a reference keep the call (and its context) alive past OnDone.
  void Ref() { references_.fetch_add(1); }
  void Unref() {
    if (references_.fetch_sub(1) == 1) delete this;
  }

  // Needs a reference. gRPC may run reactions inline in TryCancel: call it with no lock held.
  void Cancel() {
    cancelled_by_driver_ = true;
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    const double now = state_->Now();
    if (response_.token_ids_size() > 0) {
      if (record_.first_token_s < 0) record_.first_token_s = now;
      record_.last_token_s = now;
      record_.output_tokens += response_.token_ids_size();
      state_->AddTokens(response_.token_ids_size());
    }
    if (response_.has_finished()) finished_ = response_.finished();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.done_s = state_->Now();
    if (finished_ && finished_->has_usage() && finished_->usage().prompt_tokens() > 0) {
      record_.prompt_tokens = finished_->usage().prompt_tokens();
    }
    ClassifyEnd(status, finished_, cancelled_by_driver_.load(), &record_);
    state_->Completed(this, std::move(record_));
    Unref();
  }

 private:
  RunState* const state_;
  pb::GenerateRequest request_;
  pb::GenerateResponse response_;
  grpc::ClientContext context_;
  RequestRecord record_;
  std::optional<pb::Finished> finished_;
  std::atomic<bool> cancelled_by_driver_{false};
  std::atomic<int> references_{1};  // gRPC's, released in OnDone
};

void RunState::CancelLive() {
  std::vector<Call*> calls;
  {
    // A live call has not passed Completed, so it still holds gRPC's reference.
    absl::MutexLock lock(&mu_);
    for (Call* call : live_) {
      call->Ref();
      calls.push_back(call);
    }
  }
  for (Call* call : calls) {
    call->Cancel();
    call->Unref();
  }
}

// Calls `on_progress` every interval until `stop`, with the rates over the last interval.
class ProgressReporter {
 public:
  ProgressReporter(RunState* state, int64_t total, const DriverOptions& options)
      : state_(state), total_(total), options_(options) {
    if (options_.on_progress) thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressReporter() { Stop(); }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) {
      thread_.join();
      Report();  // the final state
    }
  }

 private:
  void Loop() {
    const absl::Duration interval = absl::Seconds(std::max(0.05, options_.progress_interval_s));
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), interval)) {
      mu_.Unlock();
      Report();
      mu_.Lock();
    }
  }

  void Report() {
    Progress now = state_->Snapshot();
    now.total = total_;
    now.elapsed_s = state_->Now();
    const double span = now.elapsed_s - previous_.elapsed_s;
    if (span > 0) {
      now.send_rate = (now.sent - previous_.sent) / span;
      const int64_t done = now.finished + now.errors + now.aborted;
      const int64_t done_before = previous_.finished + previous_.errors + previous_.aborted;
      now.finish_rate = (done - done_before) / span;
      now.token_rate = (now.output_tokens - previous_.output_tokens) / span;
    }
    previous_ = now;
    options_.on_progress(now);
  }

  RunState* const state_;
  const int64_t total_;
  const DriverOptions& options_;
  Progress previous_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

struct ProbeResult {
  double ttft_s = 0;
  double tpot_s = 0;
};

absl::StatusOr<ProbeResult> Probe(pb::Muxserve::Stub& stub, const std::string& model,
                                  int32_t prompt_tokens, const ProbeOptions& options,
                                  int64_t index) {
  const RequestSpec spec =
      SyntheticRequest(0, model, LengthPair{prompt_tokens, options.output_tokens});
  const pb::GenerateRequest request =
      MakeGenerateRequest(spec, options.token_range, /*seed=*/0x5eed, index);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(options.timeout_s));
  const Clock::time_point start = Clock::now();
  auto reader = stub.Generate(&context, request);
  pb::GenerateResponse response;
  std::optional<Clock::time_point> first;
  Clock::time_point last;
  int64_t tokens = 0;
  std::optional<pb::Finished> finished;
  while (reader->Read(&response)) {
    if (response.token_ids_size() > 0) {
      if (!first) first = Clock::now();
      last = Clock::now();
      tokens += response.token_ids_size();
    }
    if (response.has_finished()) finished = response.finished();
  }
  const grpc::Status status = reader->Finish();
  RequestRecord record;
  ClassifyEnd(status, finished, /*cancelled_by_driver=*/false, &record);
  const std::string where =
      absl::StrCat("measuring the base latency of '", model, "' (prompt ", prompt_tokens,
                   " tokens, output ", options.output_tokens, ")");
  if (record.outcome != Outcome::kFinished) {
    return absl::UnavailableError(absl::StrCat(where, ": ", record.error));
  }
  if (tokens < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": got ", tokens, " tokens, need 2 or more"));
  }
  return ProbeResult{SecondsBetween(start, *first),
                     SecondsBetween(*first, last) / static_cast<double>(tokens - 1)};
}

}  // namespace

absl::StatusOr<TokenRange> ParseTokenRange(std::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(AsAbsl(text), ',');
  TokenRange range;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &range.min) ||
      !absl::SimpleAtoi(parts[1], &range.max) || range.min < 0 || range.max < range.min) {
    return absl::InvalidArgumentError(
        absl::StrCat("token range '", AsAbsl(text), "': expected MIN,MAX with 0 <= MIN <= MAX"));
  }
  return range;
}

std::vector<int32_t> SyntheticPrompt(int32_t length, TokenRange range, uint64_t seed,
                                     int64_t index) {
  std::mt19937_64 rng(DeriveSeed(seed, static_cast<uint64_t>(index)));
  std::uniform_int_distribution<int32_t> token(range.min, range.max);
  std::vector<int32_t> ids(static_cast<size_t>(std::max(length, 0)));
  for (int32_t& id : ids) id = token(rng);
  return ids;
}

pb::GenerateRequest MakeGenerateRequest(const RequestSpec& request, TokenRange range, uint64_t seed,
                                        int64_t index) {
  pb::GenerateRequest call;
  call.set_model(request.model);
  if (!request.prompt_text.empty()) {
    call.set_text(request.prompt_text);
  } else {
    const std::vector<int32_t> ids = SyntheticPrompt(request.prompt_tokens, range, seed, index);
    call.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  }
  pb::SamplingParams* sampling = call.mutable_sampling();
  sampling->set_max_tokens(request.output_tokens);
  sampling->set_temperature(0.0f);
  sampling->set_ignore_eos(true);
  return call;
}

std::vector<RequestRecord> RunOpenLoop(pb::Muxserve::Stub& stub,
                                       const std::vector<RequestSpec>& requests,
                                       const DriverOptions& options) {
  const int64_t total = static_cast<int64_t>(requests.size());
  RunState state(requests.size(), Clock::now());
  ProgressReporter progress(&state, total, options);
  for (int64_t i = 0; i < total; ++i) {
    const RequestSpec& spec = requests[i];
    std::this_thread::sleep_until(
        state.origin() +
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.arrival_s)));
    // Building the request here, not up front, keeps memory flat for long runs; it takes
    // microseconds, far below any gap worth measuring.
    auto* call =
        new Call(&state, i, spec, MakeGenerateRequest(spec, options.token_range, options.seed, i));
    call->Start(stub, options.request_timeout_s);
  }
  if (!state.AwaitAll(total, absl::Seconds(options.drain_timeout_s))) {
    state.CancelLive();
    // A cancelled call always reaches OnDone, so this wait ends.
    state.AwaitAll(total, absl::InfiniteDuration());
  }
  state.AwaitReleased(total);
  progress.Stop();
  return state.TakeRecords();
}

absl::StatusOr<BaseLatency> MeasureBaseLatency(pb::Muxserve::Stub& stub, const std::string& model,
                                               int64_t max_context, const ProbeOptions& options) {
  if (options.output_tokens < 2 || options.repeats < 1) {
    return absl::InvalidArgumentError("base latency probes need output >= 2 and repeats >= 1");
  }
  std::vector<int32_t> lengths;
  for (int32_t length : options.prompt_lengths) {
    if (length >= 1 && length + options.output_tokens <= max_context) lengths.push_back(length);
  }
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  if (lengths.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("model '", model, "': no probe prompt fits ",
                                                   "its context of ", max_context, " tokens"));
  }
  int64_t index = 0;
  // The first request of a model pays one-time costs (allocations, caches): not measured.
  RETURN_IF_ERROR(Probe(stub, model, lengths.front(), options, index++).status());
  BaseLatency base;
  std::vector<double> tpots;
  for (int32_t length : lengths) {
    std::vector<double> ttfts;
    for (int r = 0; r < options.repeats; ++r) {
      ASSIGN_OR_RETURN(const ProbeResult result, Probe(stub, model, length, options, index++));
      ttfts.push_back(result.ttft_s);
      tpots.push_back(result.tpot_s);
    }
    base.ttft_points.emplace_back(length, Median(ttfts));
  }
  base.tpot_s = Median(tpots);
  return base;
}

}  // namespace muxserve::loadgen
