// The CPU backend: fp32 everywhere, weights converted from the checkpoint's dtype on load.
#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu_ops.h"
#include "muxserve/engine/ops.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/sampler.h"

namespace muxserve::engine {
namespace {

const float* F(const void* p) { return static_cast<const float*>(p); }
float* F(void* p) { return static_cast<float*>(p); }

class CpuOps final : public Ops {
 public:
  explicit CpuOps(int64_t threads) {
    if (threads > 0) {
      omp_set_num_threads(static_cast<int>(threads));
      openblas_set_num_threads(static_cast<int>(threads));
    }
  }

  DType dtype() const override { return DType::kFloat32; }

  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    // 64-byte alignment keeps rows friendly to vector loads.
    const size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
    void* memory = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (memory == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
    }
    return Buffer{.memory = std::shared_ptr<void>(memory, std::free), .bytes = bytes};
  }

  absl::StatusOr<Buffer> LoadWeight(std::span<const WeightSlice> parts) override {
    int64_t total = 0;
    ASSIGN_OR_RETURN(const std::vector<SliceBounds> bounds, ResolveSlices(parts, &total));
    ASSIGN_OR_RETURN(Buffer buffer, Allocate(total * 4));
    float* out = buffer.as<float>();
    std::vector<float> whole;
    for (size_t i = 0; i < parts.size(); ++i) {
      const model::TensorInfo& tensor = *parts[i].tensor;
      const SliceBounds& b = bounds[i];
      if (tensor.random && b.elements() == tensor.NumElements()) {
        DrawNormal(*tensor.random, b.elements(), out);
      } else if (tensor.random) {
        // The generator is sequential: draw the whole tensor, keep the slice.
        whole.resize(tensor.NumElements());
        DrawNormal(*tensor.random, tensor.NumElements(), whole.data());
        for (int64_t r = 0; r < b.rows; ++r) {
          std::memcpy(out + r * b.cols, whole.data() + b.SourceIndex(r, 0), b.cols * 4);
        }
      } else {
        const size_t element = DTypeSize(tensor.dtype);
        for (int64_t r = 0; r < b.rows; ++r) {
          ConvertToFloat(tensor.data.data() + b.SourceIndex(r, 0) * element, tensor.dtype, b.cols,
                         out + r * b.cols);
        }
      }
      out += b.elements();
    }
    return buffer;
  }

  // Random tensors (model::Weights::Random): normal values, the same for the same seed.
  static void DrawNormal(const model::RandomInit& init, int64_t count, float* out) {
    std::seed_seq sequence{static_cast<uint32_t>(init.seed),
                           static_cast<uint32_t>(init.seed >> 32)};
    std::mt19937_64 generator(sequence);
    std::normal_distribution<float> normal(init.mean, init.std);
    for (int64_t i = 0; i < count; ++i) out[i] = normal(generator);
  }

  absl::StatusOr<Buffer> UploadFloat32(std::span<const float> values) override {
    auto buffer = Allocate(static_cast<int64_t>(values.size_bytes()));
    if (!buffer.ok()) return buffer.status();
    std::memcpy(buffer->get(), values.data(), values.size_bytes());
    return buffer;
  }

  absl::Status BeginStep(const StepPlan&) override {
    error_ = absl::OkStatus();
    return absl::OkStatus();
  }

  void Embedding(const StepPlan& plan, const void* table, int64_t hidden, void* out) override {
    kernels::EmbeddingCpu(plan.tokens.data(), F(table), plan.num_tokens(), hidden, F(out));
  }
  void RmsNorm(const void* x, const void* weight, int64_t n, int64_t hidden, float eps,
               void* out) override {
    kernels::RmsNormCpu(F(x), F(weight), n, hidden, eps, F(out));
  }
  void AddRmsNorm(void* residual, const void* delta, const void* weight, int64_t n,
                  int64_t hidden, float eps, void* out) override {
    kernels::AddRmsNormCpu(F(residual), F(delta), F(weight), n, hidden, eps, F(out));
  }
  void Gemm(const void* a, const void* w, const void* bias, int64_t m, int64_t n, int64_t k,
            void* out) override {
    kernels::GemmCpu(F(a), F(w), bias == nullptr ? nullptr : F(bias), m, n, k, F(out));
  }
  void Rope(void* qkv, const StepPlan& plan, const void* inv_freq, int64_t row_stride,
            int64_t num_q_heads, int64_t num_kv_heads, int64_t k_offset,
            int64_t head_dim) override {
    kernels::RopeCpu(F(qkv), plan.positions.data(), F(inv_freq), plan.num_tokens(), row_stride,
                     num_q_heads, num_kv_heads, k_offset, head_dim);
  }
  void SiluMul(const void* gate_up, int64_t n, int64_t inter, void* out) override {
    kernels::SiluMulCpu(F(gate_up), n, inter, F(out));
  }
  void KvAppend(const void* qkv, const StepPlan& plan, int64_t row_stride, int64_t k_offset,
                int64_t v_offset, int64_t layer, const kernels::PagedKv& kv) override {
    kernels::KvAppendCpu(F(qkv), plan.seqs.data(), plan.num_seqs(), plan.block_tables.data(),
                         row_stride, k_offset, v_offset, layer, kv);
  }
  void Attention(const void* qkv, const StepPlan& plan, int64_t row_stride, int64_t num_q_heads,
                 int64_t layer, float scale, const kernels::PagedKv& kv, void* out) override {
    kernels::PagedAttentionCpu(F(qkv), plan.seqs.data(), plan.num_seqs(),
                               plan.block_tables.data(), row_stride, num_q_heads, layer, scale,
                               kv, F(out));
  }
  void GatherLogitRows(const void* x, const StepPlan& plan, int64_t width, void* out) override {
    for (size_t i = 0; i < plan.logit_rows.size(); ++i) {
      std::memcpy(F(out) + i * width, F(x) + plan.logit_rows[i] * width, width * sizeof(float));
    }
  }
  void AllReduceSum(runtime::Communicator& comm, void* x, int64_t count) override {
    if (error_.ok()) error_ = comm.AllReduceSum(x, count, DType::kFloat32, nullptr);
  }
  absl::Status CopyToHost(const void* src, int64_t count, float* dst) override {
    RETURN_IF_ERROR(error_);
    std::memcpy(dst, src, count * sizeof(float));
    return absl::OkStatus();
  }
  absl::Status SampleRows(const void* x, const void* lm_head, int64_t rows, int64_t vocab,
                          int64_t hidden, void* scratch, std::span<const RowSampling> params,
                          int32_t* tokens) override {
    RETURN_IF_ERROR(error_);
    if (static_cast<int64_t>(params.size()) != rows) {
      return absl::InvalidArgumentError(
          absl::StrCat(rows, " rows to sample but ", params.size(), " sampling parameters"));
    }
    kernels::GemmCpu(F(x), F(lm_head), nullptr, rows, vocab, hidden, F(scratch));
    for (int64_t r = 0; r < rows; ++r) {
      const RowSampling& p = params[r];
      std::mt19937_64 rng(p.seed);
      tokens[r] = sampler_.Sample(std::span<const float>(F(scratch) + r * vocab, vocab),
                                  {.temperature = p.temperature, .top_p = p.top_p, .top_k = p.top_k},
                                  rng);
    }
    return absl::OkStatus();
  }

 private:
  Sampler sampler_;
  absl::Status error_;  // the step's first failed collective, returned when the step ends
};

}  // namespace

std::unique_ptr<Ops> MakeCpuOps(int64_t threads) { return std::make_unique<CpuOps>(threads); }

}  // namespace muxserve::engine
