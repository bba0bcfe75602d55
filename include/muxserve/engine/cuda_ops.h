// The CUDA backend of engine::Ops: bf16 or fp16 weights, activations and KV blocks (the
// options' dtype) with fp32 accumulation; GEMMs through cuBLAS (cublasLt, tuned, for decode
// batches) or our GEMV (up to 8 rows), everything else through our kernels (kernels/*.cuh). A
// step's work runs in order on the stream of the current partition (UsePartition); CopyToHost and
// SampleRows are the only calls that wait for it. One instance runs one step at a time: give each
// concurrent job its own. Only in CUDA builds (MUXSERVE_WITH_CUDA).
//
// Errors: the ops return nothing, so the first failure of a step (a failed launch, a cuBLAS
// error, a shape the kernels do not support) is kept and returned by that step's CopyToHost or
// SampleRows; BeginStep starts each step clean.
#pragma once

#if MUXSERVE_WITH_CUDA

#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/statusor.h"
#include "muxserve/engine/ops.h"
#include "muxserve/runtime/partition.h"

namespace muxserve::engine {

// Which kernels run; every choice computes the same function (the others are kept to compare).
struct CudaKernelChoices {
  // Prefill chunks run on the tiled tensor-core attention kernel (head sizes 64 and 128). Off,
  // every step runs the row-per-block kernel, which handles any q_len.
  bool tiled_prefill_attention = true;
  // GEMMs of up to kernels::kGemvMaxRows rows (decode) run on our bandwidth-bound GEMV instead
  // of cuBLAS.
  bool gemv_for_few_rows = true;
  // Decode steps (every sequence one new token) run eagerly the first time a shape is seen
  // (tuning their GEMMs), are captured as a CUDA graph the second time and replayed after. A
  // graph is keyed by the partition, the model (its embedding table and activations), the
  // number of sequences and logit rows, and the context rounded up to a multiple of 256 (which
  // sets the attention's context splits); it holds the KV pool the step was captured with, so a
  // model must keep one pool. The least recently used graph goes when 256 are kept; growing the
  // step metadata buffer drops all graphs.
  bool decode_graphs = true;
};

struct CudaOpsOptions {
  int device = 0;  // CUDA runtime ordinal
  // Element type of weights, activations and KV blocks: kBFloat16 or kFloat16 (MakeCudaOps
  // refuses kFloat32). LoadWeight converts checkpoints of any dtype to it.
  DType dtype = DType::kBFloat16;
  CudaKernelChoices kernels;
  // Of every stream: where this instance's steps share SMs with other work, the block scheduler
  // places the blocks of raised streams first (decode jobs beside a prefill, popular ones first).
  runtime::StreamPriority stream_priority = runtime::StreamPriority::Normal();
};

class CudaOps : public Ops {
 public:
  // The stream every op runs on, for callers that time or order work around a step.
  virtual cudaStream_t stream() const = 0;
  // Runs the following steps on `partition`'s SMs (null: the ops' own stream on the whole GPU,
  // and the primary context), making it current on the calling thread. The first use of a partition makes its stream and
  // cuBLAS handles (call it once per partition up front to keep that off the hot path); each
  // partition has its own tuned GEMMs and decode graphs, since a graph keeps the SMs it was
  // captured on. Call between steps, from the thread that then runs them.
  [[nodiscard]] virtual absl::Status UsePartition(const runtime::SmPartition* partition) = 0;
  // Changes the kernel choices between steps (drops captured graphs).
  virtual void SetKernelChoices(const CudaKernelChoices& choices) = 0;
};

// FAILED_PRECONDITION when the device cannot be used (no driver, no such ordinal);
// INVALID_ARGUMENT for a dtype other than bfloat16 and float16.
absl::StatusOr<std::unique_ptr<CudaOps>> MakeCudaOps(const CudaOpsOptions& options);

}  // namespace muxserve::engine

#endif  // MUXSERVE_WITH_CUDA
