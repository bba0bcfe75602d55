// The closed set of primitives the transformer's forward pass needs. The CPU backend implements
// it with the fp32 reference ops; the CUDA backend with our kernels and cuBLAS. Pointers are in
// the backend's memory and of its dtype() unless said otherwise; shapes are row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/paged_kv.h"
#include "muxserve/common/dtype.h"
#include "muxserve/engine/step_plan.h"
#include "muxserve/model/safetensors.h"
#include "muxserve/runtime/communicator.h"

namespace muxserve::engine {

// Backend memory, released when the last owner goes.
struct Buffer {
  std::shared_ptr<void> memory;
  int64_t bytes = 0;
  void* get() const { return memory.get(); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(memory.get());
  }
};

// How one row's token is picked (engine::SamplingParams) and the seed of this step's draw.
struct RowSampling {
  float temperature = 0;  // <= 0: greedy
  int32_t top_k = 0;      // <= 0: no top-k cut
  float top_p = 1;        // >= 1: no nucleus cut
  uint64_t seed = 0;      // the draw depends on the seed alone
};

// The part of a checkpoint tensor one tensor-parallel rank loads: rows [row_begin, row_begin +
// rows) and columns [col_begin, col_begin + cols) of the tensor seen as a matrix [shape[0],
// elements / shape[0]] (a vector is a column). rows or cols < 0: all of them.
struct WeightSlice {
  const model::TensorInfo* tensor = nullptr;
  int64_t row_begin = 0;
  int64_t rows = -1;
  int64_t col_begin = 0;
  int64_t cols = -1;
};

// A slice's bounds resolved against its tensor's shape.
struct SliceBounds {
  int64_t total_cols = 0;  // the tensor's columns (its row pitch in elements)
  int64_t row_begin = 0;
  int64_t rows = 0;
  int64_t col_begin = 0;
  int64_t cols = 0;
  int64_t elements() const { return rows * cols; }
  // Index of element (row r, column c) of the slice in the whole tensor.
  int64_t SourceIndex(int64_t r, int64_t c) const {
    return (row_begin + r) * total_cols + col_begin + c;
  }
};
// Each part's bounds, in order (INVALID_ARGUMENT when one reaches outside its tensor), and in
// `elements` the elements of all of them.
absl::StatusOr<std::vector<SliceBounds>> ResolveSlices(std::span<const WeightSlice> parts,
                                                       int64_t* elements);

class Ops {
 public:
  virtual ~Ops() = default;
  virtual DType dtype() const = 0;
  virtual absl::StatusOr<Buffer> Allocate(int64_t bytes) = 0;
  // Concatenates slices of checkpoint tensors row-wise (fused QKV or gate/up, or one rank's
  // shard of them) in the backend's dtype. Random tensors give each slice the values it has in
  // the whole tensor, so the shards of a synthetic model add up to the unsharded model.
  virtual absl::StatusOr<Buffer> LoadWeight(std::span<const WeightSlice> parts) = 0;
  // Float32 host data (rope frequencies) into backend memory, kept as float32.
  virtual absl::StatusOr<Buffer> UploadFloat32(std::span<const float> values) = 0;
  // Makes the plan's metadata readable by the ops of this step.
  [[nodiscard]] virtual absl::Status BeginStep(const StepPlan& plan) = 0;

  virtual void Embedding(const StepPlan& plan, const void* table, int64_t hidden,
                         void* out) = 0;                        // out [tokens, hidden]
  virtual void RmsNorm(const void* x, const void* weight, int64_t n, int64_t hidden, float eps,
                       void* out) = 0;
  virtual void AddRmsNorm(void* residual, const void* delta, const void* weight, int64_t n,
                          int64_t hidden, float eps, void* out) = 0;
  virtual void Gemm(const void* a, const void* w, const void* bias, int64_t m, int64_t n,
                    int64_t k, void* out) = 0;  // out [m, n] = a [m, k] @ w [n, k]^T + bias [n]
  virtual void Rope(void* qkv, const StepPlan& plan, const void* inv_freq, int64_t row_stride,
                    int64_t num_q_heads, int64_t num_kv_heads, int64_t k_offset,
                    int64_t head_dim) = 0;
  virtual void SiluMul(const void* gate_up, int64_t n, int64_t inter, void* out) = 0;
  virtual void KvAppend(const void* qkv, const StepPlan& plan, int64_t row_stride,
                        int64_t k_offset, int64_t v_offset, int64_t layer,
                        const kernels::PagedKv& kv) = 0;
  virtual void Attention(const void* qkv, const StepPlan& plan, int64_t row_stride,
                         int64_t num_q_heads, int64_t layer, float scale,
                         const kernels::PagedKv& kv, void* out) = 0;
  // Sums x [count] over the ranks of `comm` in place (tensor parallelism: after the row-parallel
  // projections), ordered with the other ops of this step.
  virtual void AllReduceSum(runtime::Communicator& comm, void* x, int64_t count) = 0;
  // out [rows.size(), width] = x[plan.logit_rows[i]].
  virtual void GatherLogitRows(const void* x, const StepPlan& plan, int64_t width, void* out) = 0;
  // Copies `count` elements to host float32 and waits for the step to finish.
  [[nodiscard]] virtual absl::Status CopyToHost(const void* src, int64_t count, float* dst) = 0;
  // Ends a step by sampling: the fp32 logits of each row of `x` [rows, hidden] times `lm_head`
  // [vocab, hidden]^T go to `scratch` (rows x vocab floats), and tokens[i] is drawn from row i
  // by params[i] (as engine::Sampler does; the CUDA backend on the GPU, so only tokens reach the
  // host). Waits for the step to finish.
  [[nodiscard]] virtual absl::Status SampleRows(const void* x, const void* lm_head, int64_t rows,
                                                int64_t vocab, int64_t hidden, void* scratch,
                                                std::span<const RowSampling> params,
                                                int32_t* tokens) = 0;
};

// The fp32 CPU backend (OpenMP + OpenBLAS). `threads` 0 uses every core.
std::unique_ptr<Ops> MakeCpuOps(int64_t threads);

}  // namespace muxserve::engine
