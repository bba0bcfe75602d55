// What spatial-temporal multiplexing costs and buys on one GPU, measured on the engine's own
// pieces (CudaOps lanes on SM partitions, Transformer steps, random bf16 weights on the GPU):
//   - making the partition palette (green contexts) at start-up;
//   - a 7B-shaped prefill and a 1B-shaped decode step (greedy tokens drawn on the GPU) on the
//     whole GPU and on their partitions;
//   - the two at the same time on complementary partitions against one after the other on the
//     whole GPU (the gain multiplexing is for);
//   - a re-partition: decode steps that switch partitions every step against steps that stay;
//   - a preemption: recomputing a 512-token context of each shape.
// Prints a table and writes JSON (card, date, command, figures).
//
//   multiplex_bench [--out benchmarks/results/multiplex_costs.json] [--reps 20]
//                   [--partitions green|mps|none] [--decode-sms 56]
#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "benchmarks/bench_util.h"
#include "kernels/fill_random.cuh"
#include "muxserve/common/status.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/check.h"
#include "muxserve/runtime/partition.h"
#include "nlohmann/json.hpp"

namespace muxserve {
namespace {

using engine::Buffer;
using engine::CudaOps;
using engine::StepPlan;

constexpr int64_t kBlockBytes = 16384;
constexpr int kDecodeBatch = 32;
constexpr int kContext = 512;
constexpr int kPrefillTokens = 2048;

double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// One model's lane: its own CudaOps (stream, handles, graphs per partition) and activations.
struct Lane {
  model::ModelSpec spec;
  std::unique_ptr<CudaOps> ops;
  std::unique_ptr<engine::Transformer> model;
  kernels::PagedKv kv{};
  std::vector<engine::RowSampling> greedy;
  std::vector<int32_t> tokens;

  // A step as the engine runs it: greedy tokens drawn on the GPU.
  absl::Status Step(const runtime::SmPartition* partition, const StepPlan& plan) {
    RETURN_IF_ERROR(ops->UsePartition(partition));
    greedy.assign(plan.logit_rows.size(), {});
    return model->Sample(plan, kv, greedy, &tokens);
  }
  // Median wall milliseconds of `reps` steps after warm-up (the step ends with its logits on
  // the host, as in the engine).
  absl::StatusOr<double> Time(const runtime::SmPartition* partition, const StepPlan& plan,
                              int reps) {
    std::vector<double> ms;
    for (int i = 0; i < bench::kWarmup + reps; ++i) {
      const auto start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Step(partition, plan));
      if (i >= bench::kWarmup) ms.push_back(MillisecondsSince(start));
    }
    return bench::Median(ms);
  }
};

absl::StatusOr<Lane> MakeLane(const model::ModelSpec& spec, uint64_t seed, int64_t max_tokens,
                              const Buffer& pool) {
  Lane lane;
  lane.spec = spec;
  ASSIGN_OR_RETURN(lane.ops, engine::MakeCudaOps({}));
  ASSIGN_OR_RETURN(std::unique_ptr<model::Weights> weights, model::Weights::Random(spec, seed));
  ASSIGN_OR_RETURN(lane.model, engine::Transformer::Load(spec, *weights, lane.ops.get(),
                                                         max_tokens, kDecodeBatch));
  lane.kv = {.pool = pool.get(),
             .block_bytes = kBlockBytes,
             .tokens_per_block = kBlockBytes / (2 * spec.head_dim * 2),
             .head_dim = spec.head_dim,
             .num_layers = spec.num_layers,
             .num_kv_heads = spec.num_kv_heads};
  return lane;
}

struct Row {
  std::string name;
  double ms = 0;
  std::string note;
};

absl::Status Run(const std::string& out_path, int reps, config::PartitionBackend backend,
                 int decode_sms, const std::string& command) {
  cudaDeviceProp properties{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, 0));
  const int sms = properties.multiProcessorCount;
  std::printf("device: %s, %d SMs\n", properties.name, sms);

  // The palette, as a muxserve unit makes it: the whole GPU, and decode + prefill partitions.
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::PartitionSet> palette,
                   runtime::PartitionSet::Create(backend, 0, {{0}, {decode_sms, 0}}));
  const runtime::SmPartition* whole = palette->split(0)[0];
  const runtime::SmPartition* decode_part = palette->split(1)[0];
  const runtime::SmPartition* prefill_part = palette->split(1)[1];
  std::printf("palette (%s): %s | %s + %s, made in %.1f ms\n",
              std::string(config::PartitionBackendName(palette->backend())).c_str(),
              whole->label().c_str(), decode_part->label().c_str(),
              prefill_part->label().c_str(), palette->creation_ms());

  const model::ModelSpec big = bench::LlamaShape(32, 4096, 32, 32, 11008, 32000);  // Llama-2-7B
  const model::ModelSpec small = bench::LlamaShape(16, 2048, 32, 8, 8192, 32000);  // Llama-3.2-1B
  const int64_t big_tpb = kBlockBytes / (2 * big.head_dim * 2);
  const int64_t small_tpb = kBlockBytes / (2 * small.head_dim * 2);
  // One pool for both, as in a unit: the 7B's prompt first, the 1B's decode batch after it.
  const int64_t big_blocks = engine::UniformPlanBlocks(big, big_tpb, 1, kPrefillTokens);
  const int64_t small_blocks =
      engine::UniformPlanBlocks(small, small_tpb, kDecodeBatch, kContext + 1);
  ASSIGN_OR_RETURN(std::unique_ptr<CudaOps> allocator, engine::MakeCudaOps({}));
  ASSIGN_OR_RETURN(Buffer pool, allocator->Allocate((big_blocks + small_blocks) * kBlockBytes));
  CUDA_RETURN_IF_ERROR(kernels::FillRandomCuda(pool.as<kernels::bf16>(),
                                               (big_blocks + small_blocks) * kBlockBytes / 2, 4, 0,
                                               1, allocator->stream()));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(allocator->stream()));
  ASSIGN_OR_RETURN(Lane prefill, MakeLane(big, 1, kPrefillTokens, pool));
  // Room for a recomputed context too (the preemption case).
  ASSIGN_OR_RETURN(Lane decode, MakeLane(small, 2, kContext, pool));
  for (const runtime::SmPartition* p : {whole, prefill_part}) {
    RETURN_IF_ERROR(prefill.ops->UsePartition(p));
  }
  for (const runtime::SmPartition* p : {whole, decode_part}) {
    RETURN_IF_ERROR(decode.ops->UsePartition(p));
  }

  std::mt19937 rng(11);
  const StepPlan prefill_plan = engine::UniformStepPlan(big, big_tpb, 1, kPrefillTokens, 0, rng);
  const StepPlan decode_plan =
      engine::UniformStepPlan(small, small_tpb, kDecodeBatch, 1, kContext, rng, big_blocks);
  std::vector<Row> rows;
  nlohmann::ordered_json figures;

  // Alone, on the whole GPU and on each partition.
  ASSIGN_OR_RETURN(const double prefill_whole, prefill.Time(whole, prefill_plan, reps));
  ASSIGN_OR_RETURN(const double prefill_alone_part,
                   prefill.Time(prefill_part, prefill_plan, reps));
  ASSIGN_OR_RETURN(const double decode_whole, decode.Time(whole, decode_plan, reps));
  ASSIGN_OR_RETURN(const double decode_alone_part, decode.Time(decode_part, decode_plan, reps));
  rows.push_back({absl::StrCat("prefill 7B 1x", kPrefillTokens, " whole GPU"), prefill_whole,
                  whole->label()});
  rows.push_back({absl::StrCat("prefill 7B 1x", kPrefillTokens, " prefill partition"),
                  prefill_alone_part, prefill_part->label()});
  rows.push_back({absl::StrCat("decode 1B b", kDecodeBatch, " ctx", kContext, " whole GPU"),
                  decode_whole, whole->label()});
  rows.push_back({absl::StrCat("decode 1B b", kDecodeBatch, " ctx", kContext,
                               " decode partition"),
                  decode_alone_part, decode_part->label()});

  // Together: the prefill on its partition while decode steps run back to back on theirs.
  std::vector<double> together_prefill_ms;
  std::vector<double> decode_steps_during;
  std::vector<double> decode_step_ms_during;
  for (int r = 0; r < bench::kWarmup + reps; ++r) {
    std::atomic<bool> prefill_done{false};
    absl::Status decode_status;
    int steps = 0;
    double decode_ms = 0;
    std::thread decoder([&] {
      const auto start = std::chrono::steady_clock::now();
      while (!prefill_done.load() && decode_status.ok()) {
        decode_status = decode.Step(decode_part, decode_plan);
        ++steps;
      }
      decode_ms = MillisecondsSince(start);
    });
    const auto start = std::chrono::steady_clock::now();
    const absl::Status prefill_status = prefill.Step(prefill_part, prefill_plan);
    const double prefill_ms = MillisecondsSince(start);
    prefill_done = true;
    decoder.join();
    RETURN_IF_ERROR(prefill_status);
    RETURN_IF_ERROR(decode_status);
    if (r >= bench::kWarmup) {
      together_prefill_ms.push_back(prefill_ms);
      decode_steps_during.push_back(steps);
      decode_step_ms_during.push_back(decode_ms / steps);
    }
  }
  const double together_ms = bench::Median(together_prefill_ms);
  const double steps_during = bench::Median(decode_steps_during);
  const double step_during = bench::Median(decode_step_ms_during);
  // The same work one job at a time on the whole GPU.
  const double serial_ms = prefill_whole + steps_during * decode_whole;
  rows.push_back({"together: prefill on its partition", together_ms,
                  absl::StrCat("with ", steps_during, " decode steps beside it")});
  rows.push_back({"together: each decode step beside it", step_during, decode_part->label()});
  rows.push_back({"same work one job at a time, whole GPU", serial_ms,
                  absl::StrCat("prefill + ", steps_during, " x decode")});
  figures["multiplexing_speedup"] = serial_ms / together_ms;

  // Re-partition: decode steps alternating between the whole GPU and the decode partition (each
  // with its graph captured), against steps that stay where they are.
  std::vector<double> switching;
  std::vector<double> switch_host_us;
  for (int i = 0; i < bench::kWarmup + 2 * reps; ++i) {
    const runtime::SmPartition* target = i % 2 == 0 ? whole : decode_part;
    const auto switch_start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(decode.ops->UsePartition(target));
    const double switch_ms = MillisecondsSince(switch_start);
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(decode.Step(target, decode_plan));
    if (i >= bench::kWarmup) {
      switching.push_back(MillisecondsSince(start) + switch_ms);
      switch_host_us.push_back(switch_ms * 1e3);
    }
  }
  const double switching_ms = bench::Median(switching);
  const double staying_ms = (decode_whole + decode_alone_part) / 2;
  rows.push_back({"decode step switching partition each step", switching_ms,
                  absl::StrCat("staying: ", staying_ms, " ms (mean of both)")});
  figures["repartition_overhead_ms"] = switching_ms - staying_ms;
  figures["repartition_host_us"] = bench::Median(switch_host_us);

  // Preemption: the sequence's context is computed again (recompute, no swap).
  for (const Lane* lane : {&prefill, &decode}) {
    const int64_t tpb = kBlockBytes / (2 * lane->spec.head_dim * 2);
    const StepPlan recompute = engine::UniformStepPlan(lane->spec, tpb, 1, kContext, 0, rng);
    Lane& mutable_lane = const_cast<Lane&>(*lane);
    ASSIGN_OR_RETURN(const double ms, mutable_lane.Time(whole, recompute, reps));
    const std::string shape = lane == &prefill ? "7B" : "1B";
    rows.push_back({absl::StrCat("preemption: recompute ", kContext, " tokens ", shape), ms,
                    whole->label()});
    figures[absl::StrCat("preemption_recompute_ms_", shape, "_ctx", kContext)] = ms;
  }

  std::printf("\n%-46s %10s  %s\n", "case", "median ms", "note");
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const Row& row : rows) {
    std::printf("%-46s %10.3f  %s\n", row.name.c_str(), row.ms, row.note.c_str());
    results.push_back({{"name", row.name}, {"median_ms", row.ms}, {"note", row.note}});
  }
  std::printf("\nmultiplexing speed-up %.2fx, re-partition overhead %.3f ms (host %.1f us)\n",
              serial_ms / together_ms, switching_ms - staying_ms,
              bench::Median(switch_host_us));
  figures["palette_creation_ms"] = palette->creation_ms();
  figures["palette_partitions"] = palette->size();
  nlohmann::ordered_json report = {
      {"benchmark", "multiplex_costs"},
      {"card", absl::StrCat(properties.name, ", ", sms, " SMs")},
      {"date", bench::Today()},
      {"command", command},
      {"partitions", absl::StrCat(AsAbsl(config::PartitionBackendName(palette->backend())), ": ",
                                  whole->label(), " | ", decode_part->label(), " + ",
                                  prefill_part->label())},
      {"models",
       "7B = Llama-2-7B shape (32 layers, hidden 4096, 32 heads, MLP 11008); 1B = Llama-3.2-1B "
       "shape (16 layers, hidden 2048, 32 heads, 8 KV heads, MLP 8192); vocab 32000, random bf16 "
       "weights drawn on the GPU"},
      {"note",
       "wall-clock medians after warm-up; a step is Transformer::Forward including its logits "
       "copy to the host, as in the engine. 'together' runs the 7B prefill on the prefill "
       "partition while a second thread runs 1B decode steps back to back on the decode "
       "partition; 'one job at a time' is the whole-GPU prefill plus as many whole-GPU decode "
       "steps. Re-partition overhead = median step when switching partitions every step minus "
       "the mean of the two staying medians."},
      {"figures", figures},
      {"results", results}};
  return bench::WriteReport(out_path, report.dump(2) + "\n");
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) {
  CLI::App app{"Costs and gains of SM-partitioned multiplexing on one GPU"};
  std::string out = "benchmarks/results/multiplex_costs.json";
  int reps = 20;
  std::string partitions = "green";
  int decode_sms = 56;
  app.add_option("--out", out, "JSON report path");
  app.add_option("--reps", reps, "timed runs per case (after 3 warm-up runs)");
  app.add_option("--partitions", partitions, "green, mps or none")
      ->check(CLI::IsMember({"green", "mps", "none"}));
  app.add_option("--decode-sms", decode_sms, "SMs of the decode partition");
  CLI11_PARSE(app, argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i > 0 ? " " : "") + std::string(argv[i]);
  const muxserve::config::PartitionBackend backend =
      partitions == "mps"    ? muxserve::config::PartitionBackend::kMps
      : partitions == "none" ? muxserve::config::PartitionBackend::kNone
                             : muxserve::config::PartitionBackend::kGreen;
  const absl::Status status = muxserve::Run(out, reps, backend, decode_sms, command);
  if (!status.ok()) {
    std::fprintf(stderr, "multiplex_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
