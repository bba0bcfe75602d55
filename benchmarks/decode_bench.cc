// Decode and prefill steps of a Llama-2-7B-shaped model (random bf16 or fp16 weights made on the
// GPU) on the CUDA backend, each next to its floor measured in the same run: bytes a step must
// move over the device-to-device copy bandwidth, or FLOPs over the cuBLAS GEMM rate (8192^3) in
// the same dtype. Also times the pieces (decode GEMMs, attention kernels) to show where a step's
// time goes. Prints a table and writes JSON (card, date, command, dtype, floors, results).
//
//   decode_bench [--out benchmarks/results/cuda_decode.json] [--reps 20] [--dtype bf16|fp16]
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "benchmarks/bench_util.h"
#include "kernels/element_type.h"
#include "kernels/fill_random.cuh"
#include "kernels/sampling.cuh"
#include "muxserve/common/status.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/check.h"
#include "nlohmann/json.hpp"

namespace muxserve {
namespace {

using engine::Buffer;
using engine::CudaOps;
using engine::StepPlan;

constexpr int64_t kBlockBytes = 16384;

using bench::AttentionFlops;
using engine::UniformStepPlan;
using bench::StepFlops;
using bench::Time;
using bench::Timing;
using bench::Today;

// Fills `buffer` with seeded random values (mean 0) of the ops' dtype.
cudaError_t FillRandom(const CudaOps& ops, const Buffer& buffer, uint64_t seed, float std) {
  return kernels::WithElementType(ops.dtype(), [&]<typename T>(std::type_identity<T>) {
    return kernels::FillRandomCuda(buffer.as<T>(), buffer.bytes / 2, seed, 0, std, ops.stream());
  });
}

struct Floors {
  double copy_bytes_per_second = 0;
  double gemm_flops_per_second = 0;
};

absl::StatusOr<Floors> MeasureFloors(CudaOps& ops, int reps) {
  Floors floors;
  cudaStream_t stream = ops.stream();
  {
    constexpr int64_t kBytes = int64_t{1} << 30;
    ASSIGN_OR_RETURN(Buffer src, ops.Allocate(kBytes));
    ASSIGN_OR_RETURN(Buffer dst, ops.Allocate(kBytes));
    CUDA_RETURN_IF_ERROR(FillRandom(ops, src, 1, 1));
    ASSIGN_OR_RETURN(Timing t, Time(stream, reps, [&] {
                       return CUDA_STATUS(cudaMemcpyAsync(dst.get(), src.get(), kBytes,
                                                          cudaMemcpyDeviceToDevice, stream));
                     }));
    floors.copy_bytes_per_second = 2.0 * kBytes / (t.median_ms * 1e-3);
  }
  {
    constexpr int64_t kN = 8192;
    ASSIGN_OR_RETURN(Buffer a, ops.Allocate(kN * kN * 2));
    ASSIGN_OR_RETURN(Buffer b, ops.Allocate(kN * kN * 2));
    ASSIGN_OR_RETURN(Buffer c, ops.Allocate(kN * kN * 2));
    CUDA_RETURN_IF_ERROR(FillRandom(ops, a, 2, 1));
    CUDA_RETURN_IF_ERROR(FillRandom(ops, b, 3, 1));
    ASSIGN_OR_RETURN(Timing t, Time(stream, reps, [&] {
                       ops.Gemm(a.get(), b.get(), nullptr, kN, kN, kN, c.get());
                       return absl::OkStatus();
                     }));
    float probe = 0;
    RETURN_IF_ERROR(ops.CopyToHost(c.get(), 1, &probe));  // surfaces any GEMM error
    floors.gemm_flops_per_second = 2.0 * kN * kN * kN / (t.median_ms * 1e-3);
  }
  return floors;
}

struct Row {
  std::string name;
  std::string kind;  // "step", "variant" (a step with other kernel choices) or "piece"
  double median_ms = 0;
  double min_ms = 0;
  double floor_ms = 0;
  nlohmann::ordered_json extra;
};

absl::Status Run(const std::string& out_path, int reps, DType dtype, const std::string& command) {
  int device_count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&device_count));
  cudaDeviceProp properties{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, 0));
  std::printf("device: %s, %d SMs\n", properties.name, properties.multiProcessorCount);

  ASSIGN_OR_RETURN(std::unique_ptr<CudaOps> cuda,
                   engine::MakeCudaOps({.dtype = dtype, .kernels = {}}));
  const std::string dtype_name(DTypeName(dtype));
  ASSIGN_OR_RETURN(Floors floors, MeasureFloors(*cuda, reps));
  std::printf("floors: copy %.3f TB/s (read + written), %s GEMM 8192^3 %.1f TFLOP/s\n",
              floors.copy_bytes_per_second * 1e-12, dtype_name.c_str(),
              floors.gemm_flops_per_second * 1e-12);

  const model::ModelSpec spec = bench::LlamaShape(32, 4096, 32, 32, 11008, 32000);  // Llama-2-7B
  // Random weights drawn on the GPU, scaled as a trained model's (norms ~1, matrices
  // ~1/sqrt(fan-in)).
  ASSIGN_OR_RETURN(std::unique_ptr<model::Weights> weights, model::Weights::Random(spec, 1));
  constexpr int kMaxSeqs = 128;
  constexpr int kContext = 512;
  constexpr int64_t kMaxStepTokens = 8192;
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Transformer> model,
                   engine::Transformer::Load(spec, *weights, cuda.get(), kMaxStepTokens, kMaxSeqs));
  weights.reset();
  const double weight_bytes = static_cast<double>(model->weight_bytes());
  const double embedding_bytes = 2.0 * spec.vocab_size * spec.hidden_size;
  std::printf("model: Llama-2-7B shape, %.2f GB of %s weights\n", weight_bytes * 1e-9,
              dtype_name.c_str());

  // One pool for the largest case: 128 sequences of 513 tokens.
  const int64_t tokens_per_block = kBlockBytes / (2 * spec.head_dim * 2);
  const int64_t per_token_block = spec.num_layers * spec.num_kv_heads;
  const int64_t token_blocks =
      kMaxSeqs * ((kContext + 1 + tokens_per_block - 1) / tokens_per_block);
  const int64_t pool_bytes = token_blocks * per_token_block * kBlockBytes;
  ASSIGN_OR_RETURN(Buffer pool, cuda->Allocate(pool_bytes));
  CUDA_RETURN_IF_ERROR(FillRandom(*cuda, pool, 4, 1));
  const kernels::PagedKv kv{.pool = pool.get(),
                            .block_bytes = kBlockBytes,
                            .tokens_per_block = tokens_per_block,
                            .head_dim = spec.head_dim,
                            .num_layers = spec.num_layers,
                            .num_kv_heads = spec.num_kv_heads};
  const double kv_bytes_per_token = static_cast<double>(spec.KvBytesPerToken(dtype));

  std::vector<Row> rows;
  std::mt19937 rng(7);
  std::vector<float> logits;
  auto step = [&](const StepPlan& plan) { return model->Forward(plan, kv, &logits); };

  // Decode steps: as the daemon runs them, then without graphs (every kernel launched anew).
  for (bool graphs : {true, false}) {
    cuda->SetKernelChoices({.decode_graphs = graphs});
    // Batches 2 to 16 cross from our GEMV to cuBLAS (see CudaOps' GEMM tuning).
    for (int batch : {1, 2, 4, 8, 16, 32, 128}) {
      if (!graphs && batch != 1 && batch != 32 && batch != 128) continue;
      const StepPlan plan = UniformStepPlan(spec, tokens_per_block, batch, 1, kContext, rng);
      ASSIGN_OR_RETURN(Timing t, Time(cuda->stream(), reps, [&] { return step(plan); }));
      const double kv_bytes = kv_bytes_per_token * batch * (kContext + 1);
      const double bytes = weight_bytes - embedding_bytes + kv_bytes;
      rows.push_back({.name = absl::StrCat(graphs ? "" : "  ", "decode b", batch, " ctx", kContext,
                                           graphs ? "" : " no graphs"),
                      .kind = graphs ? "step" : "variant",
                      .median_ms = t.median_ms,
                      .min_ms = t.min_ms,
                      .floor_ms = bytes / floors.copy_bytes_per_second * 1e3,
                      .extra = {{"batch", batch},
                                {"context", kContext},
                                {"weight_bytes_read", weight_bytes - embedding_bytes},
                                {"kv_bytes_read", kv_bytes},
                                {"weight_read_floor_ms_all_weights",
                                 weight_bytes / floors.copy_bytes_per_second * 1e3}}});
    }
  }
  cuda->SetKernelChoices({});
  // The host side of a decode step's BeginStep (checks, staging the block tables: 32 ids per
  // token with head-wise blocks), which the GPU waits for.
  for (int batch : {32, 128}) {
    const StepPlan plan = UniformStepPlan(spec, tokens_per_block, batch, 1, kContext, rng);
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      RETURN_IF_ERROR(cuda->BeginStep(plan));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cuda->stream()));
      const auto begin = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(cuda->BeginStep(plan));
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
              .count());
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cuda->stream()));
    }
    std::sort(ms.begin(), ms.end());
    rows.push_back(
        {.name = absl::StrCat("  BeginStep host b", batch),
         .kind = "piece",
         .median_ms = ms[ms.size() / 2],
         .min_ms = ms.front(),
         .floor_ms = 0,
         .extra = {{"batch", batch}, {"block_table_bytes", plan.block_tables.size() * 4}}});
  }
  for (auto [seqs, length] : {std::pair{1, 2048}, std::pair{16, 512}}) {
    const StepPlan plan = UniformStepPlan(spec, tokens_per_block, seqs, length, 0, rng);
    ASSIGN_OR_RETURN(Timing t,
                     Time(cuda->stream(), std::max(reps / 2, 5), [&] { return step(plan); }));
    const double flops = StepFlops(spec, plan);
    rows.push_back({.name = absl::StrCat("prefill ", seqs, "x", length),
                    .kind = "step",
                    .median_ms = t.median_ms,
                    .min_ms = t.min_ms,
                    .floor_ms = flops / floors.gemm_flops_per_second * 1e3,
                    .extra = {{"sequences", seqs},
                              {"prompt_tokens", length},
                              {"flops", flops},
                              {"tflops", flops / (t.median_ms * 1e-3) * 1e-12},
                              {"fraction_of_gemm_rate",
                               flops / (t.median_ms * 1e-3) / floors.gemm_flops_per_second}}});
  }

  // Pieces: the decode step's GEMMs alone (one layer's matrices, 32 times, then lm_head).
  {
    const int64_t h = spec.hidden_size, inter = spec.intermediate_size;
    const int64_t qkv_width = spec.q_size() + 2 * spec.kv_size();
    ASSIGN_OR_RETURN(Buffer w_qkv, cuda->Allocate(qkv_width * h * 2));
    ASSIGN_OR_RETURN(Buffer w_o, cuda->Allocate(h * spec.q_size() * 2));
    ASSIGN_OR_RETURN(Buffer w_gate_up, cuda->Allocate(2 * inter * h * 2));
    ASSIGN_OR_RETURN(Buffer w_down, cuda->Allocate(h * inter * 2));
    ASSIGN_OR_RETURN(Buffer w_head, cuda->Allocate(spec.vocab_size * h * 2));
    ASSIGN_OR_RETURN(Buffer x, cuda->Allocate(kMaxSeqs * 2 * inter * 2));
    ASSIGN_OR_RETURN(Buffer y, cuda->Allocate(kMaxSeqs * spec.vocab_size * 2));
    uint64_t seed = 50;
    for (const Buffer* b : {&w_qkv, &w_o, &w_gate_up, &w_down, &w_head, &x}) {
      CUDA_RETURN_IF_ERROR(FillRandom(*cuda, *b, ++seed, 0.02f));
    }
    const double matrix_bytes =
        2.0 * (spec.num_layers * (qkv_width * h + h * spec.q_size() + 3 * inter * h) +
               spec.vocab_size * h);
    for (auto [batch, gemv] :
         {std::pair{1, true}, std::pair{1, false}, std::pair{32, true}, std::pair{128, true}}) {
      cuda->SetKernelChoices({.gemv_for_few_rows = gemv});
      // A decode step's plan: its GEMMs beyond the GEMV's rows run tuned, as in the steps.
      RETURN_IF_ERROR(
          cuda->BeginStep(UniformStepPlan(spec, tokens_per_block, batch, 1, kContext, rng)));
      ASSIGN_OR_RETURN(
          Timing t, Time(cuda->stream(), reps, [&] {
            for (int64_t l = 0; l < spec.num_layers; ++l) {
              cuda->Gemm(x.get(), w_qkv.get(), nullptr, batch, qkv_width, h, y.get());
              cuda->Gemm(x.get(), w_o.get(), nullptr, batch, h, spec.q_size(), y.get());
              cuda->Gemm(x.get(), w_gate_up.get(), nullptr, batch, 2 * inter, h, y.get());
              cuda->Gemm(x.get(), w_down.get(), nullptr, batch, h, inter, y.get());
            }
            cuda->Gemm(x.get(), w_head.get(), nullptr, batch, spec.vocab_size, h, y.get());
            return absl::OkStatus();
          }));
      float probe = 0;
      RETURN_IF_ERROR(cuda->CopyToHost(y.get(), 1, &probe));
      rows.push_back({.name = absl::StrCat("  decode GEMMs b", batch,
                                           batch <= 8 ? (gemv ? " gemv" : " cublas") : ""),
                      .kind = "piece",
                      .median_ms = t.median_ms,
                      .min_ms = t.min_ms,
                      .floor_ms = matrix_bytes / floors.copy_bytes_per_second * 1e3,
                      .extra = {{"batch", batch}, {"bytes", matrix_bytes}}});
    }
  }

  // Pieces: attention alone, all layers, on both kernels for prefill.
  for (bool tiled : {true, false}) {
    cuda->SetKernelChoices({.tiled_prefill_attention = tiled});
    CudaOps* attention_ops = cuda.get();
    const int64_t qkv_width = spec.q_size() + 2 * spec.kv_size();
    ASSIGN_OR_RETURN(Buffer qkv, attention_ops->Allocate(kMaxStepTokens * qkv_width * 2));
    ASSIGN_OR_RETURN(Buffer out, attention_ops->Allocate(kMaxStepTokens * spec.q_size() * 2));
    CUDA_RETURN_IF_ERROR(FillRandom(*attention_ops, qkv, 9, 1));
    struct Case {
      int seqs, new_tokens, cached;
    };
    std::vector<Case> cases = {{1, 2048, 0}, {16, 512, 0}};
    if (tiled)
      cases.insert(cases.begin(), {{1, 1, kContext}, {32, 1, kContext}, {128, 1, kContext}});
    for (const Case& c : cases) {
      const StepPlan plan =
          UniformStepPlan(spec, tokens_per_block, c.seqs, c.new_tokens, c.cached, rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
      ASSIGN_OR_RETURN(Timing t, Time(attention_ops->stream(), reps, [&] {
                         RETURN_IF_ERROR(attention_ops->BeginStep(plan));
                         for (int64_t l = 0; l < spec.num_layers; ++l) {
                           attention_ops->Attention(qkv.get(), plan, qkv_width, spec.num_heads, l,
                                                    scale, kv, out.get());
                         }
                         return absl::OkStatus();
                       }));
      float probe = 0;
      RETURN_IF_ERROR(attention_ops->CopyToHost(out.get(), 1, &probe));
      const bool decode = c.new_tokens == 1;
      const double kv_bytes = kv_bytes_per_token * c.seqs * (c.cached + c.new_tokens);
      const double attention_flops = AttentionFlops(spec, plan);
      rows.push_back({.name = absl::StrCat("  attention ", decode ? "decode" : "prefill", " ",
                                           c.seqs, "x", decode ? c.cached + 1 : c.new_tokens,
                                           decode ? "" : (tiled ? " tiled" : " rows")),
                      .kind = "piece",
                      .median_ms = t.median_ms,
                      .min_ms = t.min_ms,
                      .floor_ms = decode ? kv_bytes / floors.copy_bytes_per_second * 1e3
                                         : attention_flops / floors.gemm_flops_per_second * 1e3,
                      .extra = {{"sequences", c.seqs},
                                {"kv_bytes", kv_bytes},
                                {"flops", attention_flops},
                                {"tflops", attention_flops / (t.median_ms * 1e-3) * 1e-12}}});
    }
  }

  // Pieces: sampling on the GPU (temperature 0.8, top-k 50, top-p 0.9) from fp32 logits.
  for (int batch : {1, 128}) {
    std::mt19937 logit_rng(21);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> host_logits(static_cast<size_t>(batch) * spec.vocab_size);
    for (float& v : host_logits) v = normal(logit_rng);
    std::vector<kernels::SampleRowParams> host_params(batch);
    for (int b = 0; b < batch; ++b) host_params[b] = {0.8f, 50, 0.9f, 100u + b};
    ASSIGN_OR_RETURN(Buffer logits, cuda->Allocate(host_logits.size() * sizeof(float)));
    ASSIGN_OR_RETURN(Buffer params, cuda->Allocate(batch * sizeof(kernels::SampleRowParams)));
    ASSIGN_OR_RETURN(Buffer tokens, cuda->Allocate(batch * sizeof(int32_t)));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(logits.get(), host_logits.data(),
                                    host_logits.size() * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(params.get(), host_params.data(),
                                    batch * sizeof(kernels::SampleRowParams),
                                    cudaMemcpyHostToDevice));
    ASSIGN_OR_RETURN(
        Timing t, Time(cuda->stream(), reps, [&] {
          return CUDA_STATUS(kernels::SampleCuda(logits.as<float>(), batch, spec.vocab_size,
                                                 params.as<kernels::SampleRowParams>(),
                                                 tokens.as<int32_t>(), cuda->stream()));
        }));
    const double logit_bytes = static_cast<double>(host_logits.size() * sizeof(float));
    rows.push_back({.name = absl::StrCat("  sample b", batch, " vocab ", spec.vocab_size,
                                         " (T 0.8, k 50, p 0.9)"),
                    .kind = "piece",
                    .median_ms = t.median_ms,
                    .min_ms = t.min_ms,
                    .floor_ms = logit_bytes / floors.copy_bytes_per_second * 1e3,
                    .extra = {{"batch", batch}, {"logit_bytes", logit_bytes}}});
  }

  std::printf("\n%-34s %10s %10s %10s %8s\n", "case", "median ms", "min ms", "floor ms", "x floor");
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const Row& row : rows) {
    nlohmann::ordered_json entry = {{"name", row.name.substr(row.name.find_first_not_of(' '))},
                                    {"kind", row.kind},
                                    {"median_ms", row.median_ms},
                                    {"min_ms", row.min_ms}};
    if (row.floor_ms > 0) {
      std::printf("%-34s %10.3f %10.3f %10.3f %8.2f\n", row.name.c_str(), row.median_ms, row.min_ms,
                  row.floor_ms, row.median_ms / row.floor_ms);
      entry["floor_ms"] = row.floor_ms;
      entry["ratio_to_floor"] = row.median_ms / row.floor_ms;
    } else {
      std::printf("%-34s %10.3f %10.3f %10s %8s\n", row.name.c_str(), row.median_ms, row.min_ms,
                  "-", "-");
    }
    entry.update(row.extra);
    results.push_back(entry);
  }
  nlohmann::ordered_json report = {
      {"benchmark", "cuda_decode"},
      {"card", absl::StrCat(properties.name, ", ", properties.multiProcessorCount, " SMs")},
      {"date", Today()},
      {"command", command},
      {"dtype", dtype_name},
      {"model", absl::StrCat("Llama-2-7B shape (32 layers, hidden 4096, 32 heads, MLP 11008, "
                             "vocab 32000), random ",
                             dtype_name, " weights")},
      {"kv_block_bytes", kBlockBytes},
      {"copy_bandwidth_bytes_per_second", floors.copy_bytes_per_second},
      {"gemm_bf16_flops_per_second", floors.gemm_flops_per_second},
      {"note",
       "median of event-timed runs after warm-up; a step is Transformer::Forward with its "
       "BeginStep and logits copy to the host. Decode floor = (weights except the embedding "
       "table + KV read) / copy bandwidth (read + written); prefill floor = linear + attention "
       "FLOPs / GEMM rate. Pieces: the decode GEMMs alone (floor = matrix bytes), attention "
       "alone over all layers (decode floor = KV bytes; prefill floor = attention FLOPs at the "
       "GEMM rate)."},
      {"results", results}};
  return bench::WriteReport(out_path, report.dump(2) + "\n");
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) {
  CLI::App app{"CUDA backend decode and prefill benchmark (Llama-2-7B shape)"};
  std::string out = "benchmarks/results/cuda_decode.json";
  int reps = 20;
  app.add_option("--out", out, "JSON report path");
  app.add_option("--reps", reps, "timed runs per case (after 3 warm-up runs)");
  std::string dtype_name = "bf16";
  app.add_option("--dtype", dtype_name, "weights, activations and KV: bf16 or fp16");
  CLI11_PARSE(app, argc, argv);
  const absl::StatusOr<muxserve::DType> dtype = muxserve::ParseDType(dtype_name);
  if (!dtype.ok()) {
    std::fprintf(stderr, "decode_bench: --dtype: %s\n", dtype.status().ToString().c_str());
    return 1;
  }
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i > 0 ? " " : "") + std::string(argv[i]);
  const absl::Status status = muxserve::Run(out, reps, *dtype, command);
  if (!status.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
