// Tensor parallelism on one machine's GPUs (the tensor-parallel issue's figures): a
// Llama-2-13B-shaped model's decode step at batch 1 (context 512) on one GPU and split over
// --gpus GPUs, and the bus bandwidth of the engine's all-reduce calls (runtime::Communicator over
// NCCL) next to a plain NCCL all-reduce of the same sizes, measured in the same run. Writes a
// JSON report. Keep NCCL_NVLS_ENABLE=0 where NVLink multicast must stay off.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <barrier>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench_util.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/communicator.h"
#include "nlohmann/json.hpp"

namespace muxserve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kBlockBytes = 16384;
constexpr int kContext = 512;

// One GPU's share of the model with its KV pool and the decode plan of its shard.
struct Rank {
  std::unique_ptr<engine::CudaOps> ops;
  std::unique_ptr<engine::Transformer> model;
  engine::Buffer pool;
  kernels::PagedKv kv;
  engine::StepPlan plan;
};

absl::StatusOr<Rank> LoadRank(int device, const model::ModelSpec& spec,
                              const model::Weights& weights, runtime::Communicator* comm) {
  Rank rank;
  ASSIGN_OR_RETURN(rank.ops, engine::MakeCudaOps({.device = device, .kernels = {}}));
  ASSIGN_OR_RETURN(rank.model, engine::Transformer::Load(spec, weights, rank.ops.get(), 64, 1, comm));
  const model::ModelSpec& shard = rank.model->shard_spec();
  const int64_t tokens_per_block = kBlockBytes / (2 * shard.head_dim * 2);
  const int64_t blocks = engine::UniformPlanBlocks(shard, tokens_per_block, 1, kContext + 1);
  ASSIGN_OR_RETURN(rank.pool, rank.ops->Allocate(blocks * kBlockBytes));
  rank.kv = {.pool = rank.pool.get(),
             .block_bytes = kBlockBytes,
             .tokens_per_block = tokens_per_block,
             .head_dim = shard.head_dim,
             .num_layers = shard.num_layers,
             .num_kv_heads = shard.num_kv_heads};
  std::mt19937 rng(5);  // the same tokens on every rank
  rank.plan = engine::UniformStepPlan(shard, tokens_per_block, 1, 1, kContext, rng);
  return rank;
}

// Median milliseconds of one decode step on every rank at once (each rank on its own thread,
// a step ends when the slowest rank has its logits), after warm-up steps.
absl::StatusOr<double> TimeSteps(std::vector<Rank>& ranks, int reps) {
  const int n = static_cast<int>(ranks.size());
  std::barrier sync(n);
  std::vector<absl::Status> status(n);
  std::vector<double> ms;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> logits;
      for (int i = 0; i < bench::kWarmup + reps; ++i) {
        sync.arrive_and_wait();
        const auto start = Clock::now();
        if (status[r].ok()) status[r] = ranks[r].model->Forward(ranks[r].plan, ranks[r].kv, &logits);
        sync.arrive_and_wait();
        if (r == 0 && i >= bench::kWarmup) {
          ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);
  return bench::Median(ms);
}

// Median milliseconds of `count` bf16 elements all-reduced by `reduce(rank, buffer, stream)` on
// every GPU at once, timed with events on rank 0's stream over 20 calls.
template <typename Reduce>
absl::StatusOr<double> TimeAllReduce(const std::vector<int>& devices, int64_t count, int reps,
                                     Reduce reduce) {
  const int n = static_cast<int>(devices.size());
  std::barrier sync(n);
  std::vector<absl::Status> status(n);
  std::vector<double> ms;
  constexpr int kCalls = 20;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto run = [&]() -> absl::Status {
        CUDA_RETURN_IF_ERROR(cudaSetDevice(devices[r]));
        void* data = nullptr;
        cudaStream_t stream = nullptr;
        cudaEvent_t start = nullptr, stop = nullptr;
        CUDA_RETURN_IF_ERROR(cudaMalloc(&data, count * 2));
        CUDA_RETURN_IF_ERROR(cudaMemset(data, 0, count * 2));
        CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
        CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
        absl::Status result;
        for (int i = 0; i < bench::kWarmup + reps && result.ok(); ++i) {
          sync.arrive_and_wait();
          result.Update(CUDA_STATUS(cudaEventRecord(start, stream)));
          for (int c = 0; c < kCalls && result.ok(); ++c) result.Update(reduce(r, data, stream));
          result.Update(CUDA_STATUS(cudaEventRecord(stop, stream)));
          result.Update(CUDA_STATUS(cudaEventSynchronize(stop)));
          float elapsed = 0;
          result.Update(CUDA_STATUS(cudaEventElapsedTime(&elapsed, start, stop)));
          if (r == 0 && i >= bench::kWarmup) ms.push_back(elapsed / kCalls);
        }
        CUDA_LOG_IF_ERROR(cudaEventDestroy(start));
        CUDA_LOG_IF_ERROR(cudaEventDestroy(stop));
        CUDA_LOG_IF_ERROR(cudaStreamDestroy(stream));
        CUDA_LOG_IF_ERROR(cudaFree(data));
        return result;
      };
      status[r] = run();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);
  return bench::Median(ms);
}

absl::Status Run(int gpus, int reps, const std::string& out, const std::string& command) {
  int visible = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&visible));
  if (visible < gpus) {
    return absl::FailedPreconditionError(
        absl::StrCat("--gpus ", gpus, " but ", visible, " CUDA device(s) visible"));
  }
  cudaDeviceProp properties{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, 0));
  std::vector<int> devices;
  for (int d = 0; d < gpus; ++d) devices.push_back(d);

  const model::ModelSpec spec = bench::LlamaShape(40, 5120, 40, 40, 13824, 32000);  // 13B
  ASSIGN_OR_RETURN(std::unique_ptr<model::Weights> weights, model::Weights::Random(spec, 13));
  nlohmann::json results = nlohmann::json::array();

  double whole_ms = 0;
  {
    std::vector<Rank> whole;
    ASSIGN_OR_RETURN(whole.emplace_back(), LoadRank(0, spec, *weights, nullptr));
    ASSIGN_OR_RETURN(whole_ms, TimeSteps(whole, reps));
  }
  std::printf("decode b1 ctx%d, 1 GPU: %.3f ms\n", kContext, whole_ms);
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<runtime::Communicator>> comms,
                   runtime::MakeNcclCommunicators(devices));
  double split_ms = 0;
  {
    std::vector<Rank> ranks;
    for (int r = 0; r < gpus; ++r) {
      ASSIGN_OR_RETURN(ranks.emplace_back(), LoadRank(r, spec, *weights, comms[r].get()));
    }
    ASSIGN_OR_RETURN(split_ms, TimeSteps(ranks, reps));
  }
  std::printf("decode b1 ctx%d, %d GPUs: %.3f ms (%.2fx the one-GPU step; issue target <= 0.6x)\n",
              kContext, gpus, split_ms, split_ms / whole_ms);
  results.push_back({{"name", absl::StrCat("decode b1 ctx", kContext)},
                     {"tp1_ms", whole_ms},
                     {"tp_ms", split_ms},
                     {"tp", gpus},
                     {"ratio", split_ms / whole_ms},
                     {"target_ratio", 0.6}});

  // The engine's all-reduces carry [tokens, hidden] bf16: batch 1, 32 and 128 decode steps.
  std::vector<ncclComm_t> plain(gpus);
  CUDA_RETURN_IF_ERROR(ncclCommInitAll(plain.data(), gpus, devices.data()));
  const double bus_factor = 2.0 * (gpus - 1) / gpus;
  for (int64_t rows : {1, 32, 128, 2048}) {
    const int64_t count = rows * spec.hidden_size;
    ASSIGN_OR_RETURN(double ours, TimeAllReduce(devices, count, reps, [&](int r, void* data,
                                                                        cudaStream_t stream) {
      return comms[r]->AllReduceSum(data, count, DType::kBFloat16, stream);
    }));
    ASSIGN_OR_RETURN(double nccl, TimeAllReduce(devices, count, reps, [&](int r, void* data,
                                                                        cudaStream_t stream) {
      return CUDA_STATUS(ncclAllReduce(data, data, count, ncclBfloat16, ncclSum, plain[r], stream));
    }));
    const double bytes = static_cast<double>(count) * 2;
    const double ours_busbw = bus_factor * bytes / (ours * 1e-3);
    const double nccl_busbw = bus_factor * bytes / (nccl * 1e-3);
    std::printf("all-reduce %lld x %lld bf16: ours %.4f ms (%.1f GB/s bus), plain NCCL %.4f ms "
                "(%.1f GB/s bus): %.0f%%\n",
                static_cast<long long>(rows), static_cast<long long>(spec.hidden_size), ours,
                ours_busbw * 1e-9, nccl, nccl_busbw * 1e-9, 100 * ours_busbw / nccl_busbw);
    results.push_back({{"name", absl::StrCat("all-reduce ", rows, " x ", spec.hidden_size)},
                       {"bytes", bytes},
                       {"ours_ms", ours},
                       {"ours_bus_bytes_per_second", ours_busbw},
                       {"plain_nccl_ms", nccl},
                       {"plain_nccl_bus_bytes_per_second", nccl_busbw},
                       {"ours_of_plain", ours_busbw / nccl_busbw},
                       {"target_of_plain", 0.8}});
  }
  for (ncclComm_t comm : plain) CUDA_LOG_IF_ERROR(ncclCommDestroy(comm));
  const nlohmann::json report = {
      {"benchmark", "tensor_parallel"},
      {"card", absl::StrCat(properties.name, " x ", gpus)},
      {"date", bench::Today()},
      {"command", command},
      {"model", "Llama-2-13B shape (40 layers, hidden 5120, 40 heads, MLP 13824), random bf16"},
      {"results", results}};
  return bench::WriteReport(out, report.dump(2) + "\n");
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) {
  CLI::App app("Tensor-parallel decode step and all-reduce bandwidth against plain NCCL");
  int gpus = 2;
  int reps = 20;
  std::string out = "benchmarks/results/tensor_parallel.json";
  app.add_option("--gpus", gpus, "GPUs to split the model over")->check(CLI::Range(2, 8));
  app.add_option("--reps", reps, "timed runs per case (after warm-up)");
  app.add_option("--out", out, "JSON report path");
  CLI11_PARSE(app, argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  const absl::Status status = muxserve::Run(gpus, reps, out, command);
  if (!status.ok()) {
    std::fprintf(stderr, "tp_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
