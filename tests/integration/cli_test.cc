// Tests of the built muxserve CLI binary: local commands, and client commands against the
// shared muxserved.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/model/weights.h"
#include "process.h"
#include "serving.h"

namespace muxserve::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::chrono::seconds kCliTimeout{30};

// Commands that need no daemon, and client commands against the shared daemon.
class CliLocalTest : public ScratchTest {};
class CliClientTest : public SharedDaemonTest {};

absl::StatusOr<ProcessResult> RunCli(const Serving& serving, std::vector<std::string> args,
                                     const std::string& input = "") {
  args.insert(args.begin(), (BuildDir() / "src" / "apps" / "muxserve").string());
  return RunProcess(args, serving.dir(), kCliTimeout, input);
}

size_t CountOccurrences(const std::string& text, const std::string& word) {
  size_t count = 0;
  for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    ++count;
  }
  return count;
}

TEST_F(CliLocalTest, CheckConfigRejectsABadFileNamingFileLineAndKey) {
  const std::filesystem::path path = serving().dir() / "bad.yaml";
  std::ofstream(path) << "server:\n"
                      << "  grpc_address: 127.0.0.1:0\n"
                      << "models:\n"
                      << "  - name: tiny\n"
                      << "    path: " << serving().ModelDir(kModelA).string() << "\n"
                      << "    rate: -1\n";
  absl::StatusOr<ProcessResult> run = RunCli(serving(), {"check-config", path.string()});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 2);
  EXPECT_THAT(run->err, HasSubstr("bad.yaml:6:"));
  EXPECT_THAT(run->err, HasSubstr("models[0].rate"));
}

TEST_F(CliLocalTest, CheckConfigSummarizesAValidFile) {
  const std::filesystem::path path = serving().WriteConfig("valid.yaml", DaemonSettings{});
  absl::StatusOr<ProcessResult> run = RunCli(serving(), {"check-config", path.string()});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_THAT(run->out, HasSubstr(kModelA));
  EXPECT_THAT(run->out, HasSubstr(kModelB));
  EXPECT_THAT(run->out, HasSubstr(serving().ModelDir(kModelB).string()));
}

TEST_F(CliLocalTest, MakeModelWritesALoadableDirectory) {
  const std::filesystem::path out = serving().dir() / "made-by-cli";
  absl::StatusOr<ProcessResult> run =
      RunCli(serving(), {"make-model", "--out", out.string(), "--layers", "1", "--hidden", "48",
                         "--heads", "3", "--kv-heads", "1", "--intermediate", "96", "--vocab",
                         "300", "--tie-embeddings", "--seed", "5"});
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  EXPECT_THAT(run->out, HasSubstr(out.string()));

  absl::StatusOr<model::ModelSpec> spec = model::LoadModelSpec(out);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_layers, 1);
  EXPECT_EQ(spec->hidden_size, 48);
  EXPECT_EQ(spec->num_heads, 3);
  EXPECT_EQ(spec->num_kv_heads, 1);
  EXPECT_EQ(spec->head_dim, 16);
  EXPECT_EQ(spec->vocab_size, 300);
  EXPECT_TRUE(spec->tie_word_embeddings);
  EXPECT_THAT(run->out, HasSubstr("parameters: " + std::to_string(spec->NumParameters())));

  absl::StatusOr<std::unique_ptr<model::Weights>> weights = model::Weights::Load(out, *spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_THAT(run->out, HasSubstr("weight bytes: " + std::to_string((*weights)->TotalBytes())));
  EXPECT_TRUE(model::Tokenizer::Load(out).ok());
}

TEST_F(CliLocalTest, TokenizeAndDetokenizeRoundTrip) {
  const std::filesystem::path out = serving().dir() / "tokenizer-model";
  absl::StatusOr<ProcessResult> made =
      RunCli(serving(), {"make-model", "--out", out.string(), "--layers", "1", "--hidden", "32",
                         "--heads", "2", "--kv-heads", "2", "--intermediate", "64"});
  ASSERT_TRUE(made.ok() && made->exit_code == 0) << (made.ok() ? made->err : "");
  const std::string text = "caf\u00e9 \xe4\xb8\xad<|im_end|>";
  absl::StatusOr<ProcessResult> ids =
      RunCli(serving(), {"tokenize", "--model-dir", out.string(), "--text", text});
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->exit_code, 0) << ids->err;
  const std::string first_line = ids->out.substr(0, ids->out.find('\n'));
  // The special token is one id (258), never split into bytes.
  EXPECT_THAT(first_line, HasSubstr(",258"));
  absl::StatusOr<ProcessResult> back =
      RunCli(serving(), {"detokenize", "--model-dir", out.string(), "--ids", first_line});
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->exit_code, 0) << back->err;
  EXPECT_EQ(back->out, text + "\n");
  absl::StatusOr<ProcessResult> bad =
      RunCli(serving(), {"detokenize", "--model-dir", out.string(), "--ids", "1,99999"});
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->exit_code, 0);
  EXPECT_THAT(bad->err, HasSubstr("99999"));
}

TEST_F(CliLocalTest, ProfileWritesTheTablePlanReads) {
  // The CPU backend's table is keyed "cpu": a cluster of that name plans with it.
  const std::filesystem::path config = serving().dir() / "profile.yaml";
  std::ofstream(config) << "cluster: {gpu: {name: cpu}}\n"
                        << "placement: {cost_table: profiled.json}\n"
                        << "runtime: {backend: cpu, cpu_threads: 1}\n"
                        << "models:\n"
                        << "  - name: tiny\n"
                        << "    synthetic: {layers: 1, hidden: 64, heads: 4, intermediate: 128,\n"
                        << "                vocab: 320, max_position: 256, seed: 1}\n";
  const std::vector<std::string> profile = {
      "profile",   "--config", config.string(), "--backend",         "cpu", "--batches",
      "1,4",       "--tokens", "16,64",         "--prefill-batches", "1,2", "--repetitions",
      "3"};
  absl::StatusOr<ProcessResult> run = RunCli(serving(), profile);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  // The progress bar rewrites one stderr line; the summary goes to stdout.
  EXPECT_THAT(run->err, HasSubstr("\rtiny"));
  EXPECT_THAT(run->err, HasSubstr("8/8"));
  EXPECT_THAT(run->out, HasSubstr("decode: 4 points"));
  EXPECT_THAT(run->out, HasSubstr("wrote " + (serving().dir() / "profiled.json").string()));

  absl::StatusOr<ProcessResult> plan =
      RunCli(serving(), {"plan", config.string(), "--out", "-"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->exit_code, 0) << plan->err;
  EXPECT_THAT(plan->out, HasSubstr("profiled table"));

  absl::StatusOr<ProcessResult> again = RunCli(serving(), profile);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->exit_code, 0) << again->err;
  EXPECT_THAT(again->out, HasSubstr("in the table already"));

  std::vector<std::string> bad = profile;
  bad.insert(bad.end(), {"--model", "nope"});
  absl::StatusOr<ProcessResult> unknown = RunCli(serving(), bad);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->exit_code, 2);
  EXPECT_THAT(unknown->err, HasSubstr("no model 'nope'"));
}

TEST_F(CliLocalTest, BadFlagsFailWithCli11Messages) {
  absl::StatusOr<ProcessResult> zero_layers = RunCli(
      serving(), {"make-model", "--out", (serving().dir() / "never").string(), "--layers", "0"});
  ASSERT_TRUE(zero_layers.ok()) << zero_layers.status();
  EXPECT_NE(zero_layers->exit_code, 0);
  EXPECT_THAT(zero_layers->err, HasSubstr("--layers"));
  EXPECT_FALSE(std::filesystem::exists(serving().dir() / "never"));

  absl::StatusOr<ProcessResult> no_prompt = RunCli(serving(), {"generate", "--model", "m"});
  ASSERT_TRUE(no_prompt.ok()) << no_prompt.status();
  EXPECT_NE(no_prompt->exit_code, 0);

  absl::StatusOr<ProcessResult> no_command = RunCli(serving(), {});
  ASSERT_TRUE(no_command.ok()) << no_command.status();
  EXPECT_NE(no_command->exit_code, 0);
}

// Several loads of an experiment: rate scales of the power law, or speed-ups of a trace; each
// misuse is refused before any daemon starts.
TEST_F(CliLocalTest, ExperimentLoadFlagsAreChecked) {
  const std::filesystem::path config = serving().dir() / "experiment.yaml";
  std::ofstream(config) << "models:\n  - name: m\n"
                           "    synthetic: {layers: 1, hidden: 32, heads: 2, intermediate: 64}\n";
  const std::filesystem::path trace = serving().dir() / "experiment-trace.jsonl";
  std::ofstream(trace) << R"({"arrival_s": 0, "model": "m", "prompt_tokens": 4, "output_tokens": 2})"
                       << "\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--rate-scales", "2,fast"}, "rate scales: 'fast' is not a number > 0"},
      {{"--rate-scales", "2,2"}, "given twice"},
      {{"--trace-speedups", "2"}, "--trace-speedups needs --trace"},
      {{"--trace", trace.string(), "--rate-scales", "2"}, "a trace has its own rates"},
      {{"--rates", "m=2", "--rate-scales", "2"}, "--rates gives the rates themselves"},
      {{"--trace", trace.string(), "--trace-speedups", "0"}, "trace speed-ups: '0'"},
  };
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> args = {"experiment", "--config", config.string(), "--out",
                                     (serving().dir() / "never-experiment").string()};
    args.insert(args.end(), flags.begin(), flags.end());
    absl::StatusOr<ProcessResult> run = RunCli(serving(), args);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_NE(run->exit_code, 0) << message;
    EXPECT_THAT(run->err, HasSubstr(message));
  }
  EXPECT_FALSE(std::filesystem::exists(serving().dir() / "never-experiment"));
}

TEST_F(CliClientTest, CliGenerateStreamsTextAndReportsUsage) {
  absl::StatusOr<ProcessResult> run =
      RunCli(serving(), {"generate", "--addr", daemon().grpc_address(), "--model", kModelA,
                         "--prompt", "Hello there", "--max-tokens", "8", "--temperature", "0",
                         "--ignore-eos", "--show-ids"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_FALSE(run->out.empty());
  EXPECT_THAT(run->out, HasSubstr("token_ids: "));
  EXPECT_THAT(run->err, HasSubstr("finish_reason: length"));
  EXPECT_THAT(run->err, HasSubstr("completion_tokens: 8"));
  EXPECT_THAT(run->err, HasSubstr("tokens/s"));
}

TEST_F(CliClientTest, CliGenerateTakesTokenIds) {
  absl::StatusOr<ProcessResult> run = RunCli(
      serving(), {"generate", "--addr", daemon().grpc_address(), "--model", kModelB, "--token-ids",
                  "72,101,108", "--max-tokens", "3", "--ignore-eos", "--seed", "1"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_THAT(run->err, HasSubstr("prompt_tokens: 3"));
}

TEST_F(CliClientTest, CliReportsServerErrorsWithTheirCode) {
  absl::StatusOr<ProcessResult> unknown =
      RunCli(serving(),
             {"generate", "--addr", daemon().grpc_address(), "--model", "nope", "--prompt", "hi"});
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->exit_code, 1);
  EXPECT_THAT(unknown->err, HasSubstr("error: NOT_FOUND: "));

  absl::StatusOr<ProcessResult> bad_top_p =
      RunCli(serving(), {"generate", "--addr", daemon().grpc_address(), "--model", kModelA,
                         "--prompt", "hi", "--top-p", "2"});
  ASSERT_TRUE(bad_top_p.ok()) << bad_top_p.status();
  EXPECT_EQ(bad_top_p->exit_code, 1);
  EXPECT_THAT(bad_top_p->err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(bad_top_p->err, HasSubstr("top_p"));

  absl::StatusOr<ProcessResult> abort =
      RunCli(serving(), {"abort", "--addr", daemon().grpc_address(), "--request-id", "nobody"});
  ASSERT_TRUE(abort.ok()) << abort.status();
  EXPECT_EQ(abort->exit_code, 1);
  EXPECT_THAT(abort->err, HasSubstr("error: NOT_FOUND: "));
}

TEST_F(CliClientTest, CliChatRunsEachMessageAsATurn) {
  absl::StatusOr<ProcessResult> run =
      RunCli(serving(), {"chat", "--addr", daemon().grpc_address(), "--model", kModelA, "--system",
                         "Be brief.", "--message", "Hi", "--message", "And again?", "--max-tokens",
                         "4", "--ignore-eos", "--temperature", "0"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  // One summary line per turn.
  EXPECT_EQ(CountOccurrences(run->err, "finish_reason"), 2u) << run->err;
}

TEST_F(CliClientTest, CliChatReadsOneTurnPerStdinLine) {
  absl::StatusOr<ProcessResult> run =
      RunCli(serving(),
             {"chat", "--addr", daemon().grpc_address(), "--model", kModelB, "--max-tokens", "3",
              "--ignore-eos", "--seed", "9"},
             "Hello\n\nTell me more\nThanks\n");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  // Empty lines are skipped; the conversation grows by each turn and its reply.
  EXPECT_EQ(CountOccurrences(run->err, "completion_tokens: 3"), 3u) << run->err;
  std::vector<int> prompt_tokens;
  const std::string key = "prompt_tokens: ";
  for (size_t pos = run->err.find(key); pos != std::string::npos;
       pos = run->err.find(key, pos + 1)) {
    prompt_tokens.push_back(std::stoi(run->err.substr(pos + key.size())));
  }
  ASSERT_EQ(prompt_tokens.size(), 3u) << run->err;
  EXPECT_LT(prompt_tokens[0], prompt_tokens[1]);
  EXPECT_LT(prompt_tokens[1], prompt_tokens[2]);
}

TEST_F(CliClientTest, CliListsModelsAndStats) {
  absl::StatusOr<ProcessResult> models =
      RunCli(serving(), {"models", "--addr", daemon().grpc_address()});
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_EQ(models->exit_code, 0) << models->err;
  EXPECT_THAT(models->out, HasSubstr(kModelA));
  EXPECT_THAT(models->out, HasSubstr(kModelB));
  EXPECT_THAT(models->out, HasSubstr("SERVING"));

  absl::StatusOr<ProcessResult> stats =
      RunCli(serving(), {"stats", "--addr", daemon().grpc_address()});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->exit_code, 0) << stats->err;
  EXPECT_THAT(stats->out, HasSubstr(kModelA));
  EXPECT_THAT(stats->out, HasSubstr(kModelB));
  EXPECT_THAT(stats->out, Not(HasSubstr("error")));
}

}  // namespace
}  // namespace muxserve::integration
