// The CUDA backend: bf16 or fp16 everywhere on the device, fp32 accumulation. See cuda_ops.h.
#include "muxserve/engine/cuda_ops.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/bias_add.cuh"
#include "kernels/element_type.h"
#include "kernels/embedding.cuh"
#include "kernels/fill_random.cuh"
#include "kernels/gather_rows.cuh"
#include "kernels/gemv.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/paged_attention.cuh"
#include "kernels/prefill_attention.cuh"
#include "kernels/rms_norm.cuh"
#include "kernels/rope.cuh"
#include "kernels/sampling.cuh"
#include "kernels/silu_mul.cuh"
#include "muxserve/common/status.h"
#include "muxserve/runtime/check.h"
#include "spdlog/spdlog.h"

namespace muxserve::engine {
namespace {

using kernels::WithElementType;

// Backend memory as the kernels' element type T.
template <typename T>
const T* As(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
T* As(void* p) {
  return static_cast<T*>(p);
}

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
constexpr int64_t kConvertChunk = int64_t{1} << 20;  // elements converted per host pass
// Decode attention splits rows' contexts until about this many blocks per SM run, in pieces of
// at least kMinSplitKeys keys.
constexpr int64_t kSplitBlocksPerSm = 4;
constexpr int64_t kMinSplitKeys = 32;
// Decode steps plan attention splits for the context rounded up to this (see BeginStep).
constexpr int64_t kSplitContextQuantum = 256;
// Step metadata starts this large (bytes) and doubles: every growth drops the decode graphs.
constexpr int64_t kInitialMetadataBytes = int64_t{1} << 20;
// Decode graphs kept; the least recently used goes first (batch sizes drift step by step).
constexpr size_t kMaxDecodeGraphs = 256;
// Decode GEMMs with more rows than the GEMV takes, up to this many, are tuned: cuBLAS's default
// choice for such memory-bound shapes often leaves bandwidth unused.
constexpr int64_t kMaxTunedGemmRows = 256;
constexpr int kTuningCandidates = 8;
constexpr int kTuningRuns = 5;

// Pinned host memory that only grows.
class PinnedBuffer {
 public:
  ~PinnedBuffer() {
    if (data_ != nullptr) CUDA_LOG_IF_ERROR(cudaFreeHost(data_));
  }
  void* data() const { return data_; }
  // The caller makes sure no copy still reads or writes the old memory.
  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    if (data_ != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeHost(data_));
    data_ = nullptr;
    capacity_ = 0;
    CUDA_RETURN_IF_ERROR(cudaMallocHost(&data_, bytes));
    capacity_ = bytes;
    return absl::OkStatus();
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Where each part of a step's metadata sits in the one buffer that carries it to the device,
// in int32 units, every part 16-byte aligned. The block tables come last: their size changes
// from step to step, and the other parts then keep their places for a given step shape (which
// replayed graphs rely on).
struct StepLayout {
  int64_t tokens = 0, positions = 0, token_seq = 0, seqs = 0, logit_rows = 0, tiles = 0,
          block_tables = 0, total = 0;
};

int64_t Align4(int64_t words) { return (words + 3) / 4 * 4; }

class CudaOpsImpl final : public CudaOps {
 public:
  CudaOpsImpl(const CudaOpsOptions& options, int sm_count)
      : options_(options),
        element_type_(options.dtype == DType::kFloat16 ? CUDA_R_16F : CUDA_R_16BF),
        choices_(options.kernels),
        device_sm_count_(sm_count),
        sm_count_(sm_count) {}

  ~CudaOpsImpl() override {
    AbandonCapture();
    DropGraphs();
    for (auto& [shape, tuned] : tuned_gemms_) {
      if (tuned != nullptr) DestroyTunedGemm(*tuned);
    }
    for (auto& [shape, layouts] : row_layouts_) {
      if (layouts.out != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatrixLayoutDestroy(layouts.out));
      if (layouts.a != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatrixLayoutDestroy(layouts.a));
    }
    bool entered = false;
    for (auto& lane : lanes_) {
      if (lane == nullptr) continue;
      entered |= lane->partition != nullptr;
      if (lane->partition != nullptr) {
        if (absl::Status entered = lane->partition->Enter(); !entered.ok()) {
          spdlog::warn("CUDA backend: cannot enter partition {}: {}", lane->partition->label(),
                       entered.ToString());
        }
      }
      if (lane->stream != nullptr) CUDA_LOG_IF_ERROR(cudaStreamSynchronize(lane->stream));
      if (lane->cublas_lt != nullptr) CUDA_LOG_IF_ERROR(cublasLtDestroy(lane->cublas_lt));
      if (lane->cublas != nullptr) CUDA_LOG_IF_ERROR(cublasDestroy(lane->cublas));
      if (lane->metadata_copied != nullptr) {
        CUDA_LOG_IF_ERROR(cudaEventDestroy(lane->metadata_copied));
      }
      if (lane->stream != nullptr) CUDA_LOG_IF_ERROR(cudaStreamDestroy(lane->stream));
    }
    // Partitions usually go right after their lanes: leave none current on this thread.
    if (entered) {
      if (absl::Status left = runtime::LeavePartitions(); !left.ok()) {
        spdlog::warn("CUDA backend: {}", left.ToString());
      }
    }
  }

  absl::Status Init() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    // A workspace of our own: cuBLAS then allocates nothing while a step runs.
    ASSIGN_OR_RETURN(cublas_workspace_, Allocate(kCublasWorkspaceBytes));
    ASSIGN_OR_RETURN(attention_partial_,
                     Allocate(PartialCapacityFloats() * static_cast<int64_t>(sizeof(float))));
    lanes_.resize(1);
    return UsePartition(nullptr);
  }

  absl::Status UsePartition(const runtime::SmPartition* partition) override {
    if (graph_mode_ != GraphMode::kNone) {
      return absl::FailedPreconditionError("CUDA backend: partition changed inside a step");
    }
    const size_t index = partition == nullptr ? 0 : static_cast<size_t>(partition->id()) + 1;
    if (partition != nullptr) {
      RETURN_IF_ERROR(partition->Enter());
    } else if (lane_index_ != 0) {
      // The primary context again: the thread must not keep one that may be destroyed first.
      RETURN_IF_ERROR(runtime::LeavePartitions());
      CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    }
    if (index >= lanes_.size()) lanes_.resize(index + 1);
    if (lanes_[index] == nullptr) {
      auto lane = std::make_unique<Lane>();
      lane->partition = partition;
      RETURN_IF_ERROR(MakeLane(lane.get()));
      lanes_[index] = std::move(lane);
    }
    const Lane& lane = *lanes_[index];
    lane_index_ = static_cast<int>(index);
    stream_ = lane.stream;
    metadata_copied_ = lane.metadata_copied;
    cublas_ = lane.cublas;
    cublas_lt_ = lane.cublas_lt;
    sm_count_ = partition == nullptr ? device_sm_count_
                                     : std::min(partition->sm_count(), device_sm_count_);
    return absl::OkStatus();
  }

  cudaStream_t stream() const override { return stream_; }
  void SetKernelChoices(const CudaKernelChoices& choices) override {
    AbandonCapture();
    DropGraphs();
    choices_ = choices;
  }
  DType dtype() const override { return options_.dtype; }

  absl::StatusOr<Buffer> Allocate(int64_t bytes) override {
    void* memory = nullptr;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&memory, static_cast<size_t>(std::max<int64_t>(bytes, 256))));
    return Buffer{
        .memory = std::shared_ptr<void>(memory, [](void* m) { CUDA_LOG_IF_ERROR(cudaFree(m)); }),
        .bytes = bytes};
  }

  absl::StatusOr<Buffer> LoadWeight(std::span<const WeightSlice> parts) override {
    int64_t total = 0;
    ASSIGN_OR_RETURN(const std::vector<SliceBounds> bounds, ResolveSlices(parts, &total));
    ASSIGN_OR_RETURN(Buffer buffer, Allocate(total * 2));
    auto* dst = buffer.as<uint16_t>();  // 16-bit elements of the ops' dtype
    std::vector<float> floats;
    std::vector<uint16_t> converted;
    for (size_t i = 0; i < parts.size(); ++i) {
      const model::TensorInfo& tensor = *parts[i].tensor;
      const SliceBounds& b = bounds[i];
      if (tensor.random) {
        // Drawn on the device (model::Weights::Random): nothing crosses PCIe.
        const model::RandomInit& init = *tensor.random;
        CUDA_RETURN_IF_ERROR(
            WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
              return kernels::FillRandomSliceCuda(reinterpret_cast<T*>(dst), b.rows, b.cols,
                                                  init.seed, init.mean, init.std,
                                                  b.SourceIndex(0, 0), b.total_cols, stream_);
            }));
      } else if (tensor.dtype == options_.dtype) {
        CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
            dst, b.cols * 2, tensor.data.data() + b.SourceIndex(0, 0) * 2, b.total_cols * 2,
            b.cols * 2, b.rows, cudaMemcpyHostToDevice, stream_));
        CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the host data is pageable
      } else {
        // Other dtypes convert on the host, a row (or a chunk of one) at a time.
        const size_t element = DTypeSize(tensor.dtype);
        for (int64_t r = 0; r < b.rows; ++r) {
          for (int64_t begin = 0; begin < b.cols; begin += kConvertChunk) {
            const int64_t n = std::min(kConvertChunk, b.cols - begin);
            floats.resize(n);
            converted.resize(n);
            ConvertToFloat(tensor.data.data() + (b.SourceIndex(r, 0) + begin) * element,
                           tensor.dtype, n, floats.data());
            ConvertFromFloat(floats.data(), n, options_.dtype, converted.data());
            RETURN_IF_ERROR(CopyToDevice(dst + r * b.cols + begin, converted.data(), n * 2));
          }
        }
      }
      dst += b.elements();
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the fills are done when we return
    return buffer;
  }

  absl::StatusOr<Buffer> UploadFloat32(std::span<const float> values) override {
    ASSIGN_OR_RETURN(Buffer buffer, Allocate(static_cast<int64_t>(values.size_bytes())));
    RETURN_IF_ERROR(CopyToDevice(buffer.get(), values.data(), values.size_bytes()));
    return buffer;
  }

  absl::Status BeginStep(const StepPlan& plan) override;

  // The first op of a step names the model: a decode step replays its graph from here, or
  // starts capturing one.
  void Embedding(const StepPlan&, const void* table, int64_t hidden, void* out) override {
    if (graph_eligible_ && graph_mode_ == GraphMode::kNone && error_.ok()) {
      // First sight runs eagerly (and tunes its GEMMs), the second is captured, later ones
      // replay.
      const GraphKey key{lane_index_, table, out, num_tokens_, num_logit_rows_, split_context_};
      const auto found = graphs_.find(key);
      if (found == graphs_.end()) {
        if (graphs_.size() >= kMaxDecodeGraphs) DropLeastRecentGraph();
        graphs_[key] = {.exec = nullptr, .used = ++graph_clock_};
      } else if (found->second.exec != nullptr) {
        found->second.used = ++graph_clock_;
        graph_mode_ = GraphMode::kReplaying;
        graph_ = found->second.exec;
        return;
      } else {
        Record(CUDA_STATUS(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal)));
        if (!error_.ok()) return;
        graph_mode_ = GraphMode::kCapturing;
        capture_key_ = key;
      }
    }
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::EmbeddingCuda(tokens_, As<T>(table), num_tokens_, hidden, As<T>(out),
                                    stream_);
    })));
  }

  void RmsNorm(const void* x, const void* weight, int64_t n, int64_t hidden, float eps,
               void* out) override {
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::RmsNormCuda(As<T>(x), As<T>(weight), n, hidden, eps, As<T>(out), stream_);
    })));
  }

  void AddRmsNorm(void* residual, const void* delta, const void* weight, int64_t n, int64_t hidden,
                  float eps, void* out) override {
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::AddRmsNormCuda(As<T>(residual), As<T>(delta), As<T>(weight), n, hidden, eps,
                                     As<T>(out), stream_);
    })));
  }

  void Gemm(const void* a, const void* w, const void* bias, int64_t m, int64_t n, int64_t k,
            void* out) override {
    if (m == 0 || Replaying()) return;
    const TunedGemm* tuned =
        max_q_len_ == 1 && m <= kMaxTunedGemmRows ? FindOrTuneGemm(a, w, m, n, k, out) : nullptr;
    // Decode GEMMs take the GEMV where tuning timed it faster than cuBLAS; untuned ones (a few
    // prompt tokens) whenever it takes the shape.
    const bool gemv = choices_.gemv_for_few_rows && kernels::GemvSupports(m, k) &&
                      (tuned != nullptr ? tuned->use_gemv : true);
    if (gemv) {
      Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
        return kernels::GemvCuda(As<T>(a), As<T>(w), As<T>(bias), m, n, k, As<T>(out), stream_);
      })));
      return;
    }
    // Row-major out [m, n] = a [m, k] @ w [n, k]^T is column-major out^T = w^T-as-stored @ a^T.
    const float alpha = 1.0f;
    const float beta = 0.0f;
    const RowLayouts* layouts = tuned != nullptr && tuned->has_algo ? LayoutsFor(*tuned, m, n, k)
                                                                     : nullptr;
    if (layouts != nullptr) {
      Record(CUDA_STATUS(cublasLtMatmul(cublas_lt_, tuned->operation, &alpha, w, tuned->w, a,
                                        layouts->a, &beta, out, layouts->out, out, layouts->out,
                                        &tuned->algo, cublas_workspace_.get(),
                                        kCublasWorkspaceBytes, stream_)));
    } else {
      Record(CUDA_STATUS(
          cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                       static_cast<int>(k), &alpha, w, element_type_, static_cast<int>(k), a,
                       element_type_, static_cast<int>(k), &beta, out, element_type_,
                       static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)));
    }
    if (bias != nullptr) {
      Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
        return kernels::BiasAddCuda(As<T>(out), As<T>(bias), m, n, stream_);
      })));
    }
  }

  void Rope(void* qkv, const StepPlan&, const void* inv_freq, int64_t row_stride,
            int64_t num_q_heads, int64_t num_kv_heads, int64_t k_offset,
            int64_t head_dim) override {
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::RopeCuda(As<T>(qkv), positions_, static_cast<const float*>(inv_freq),
                               num_tokens_, row_stride, num_q_heads, num_kv_heads, k_offset,
                               head_dim, stream_);
    })));
  }

  void SiluMul(const void* gate_up, int64_t n, int64_t inter, void* out) override {
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::SiluMulCuda(As<T>(gate_up), n, inter, As<T>(out), stream_);
    })));
  }

  void KvAppend(const void* qkv, const StepPlan&, int64_t row_stride, int64_t k_offset,
                int64_t v_offset, int64_t layer, const kernels::PagedKv& kv) override {
    if (Replaying() || !CheckKv(kv)) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::KvAppendCuda(As<T>(qkv), token_seq_, seqs_, block_tables_, num_tokens_,
                                   row_stride, k_offset, v_offset, layer, kv, stream_);
    })));
  }

  void Attention(const void* qkv, const StepPlan& plan, int64_t row_stride, int64_t num_q_heads,
                 int64_t layer, float scale, const kernels::PagedKv& kv, void* out) override;

  // NCCL calls are captured into the decode graph like the kernels around them. Enqueued even
  // after an earlier op of this step failed: the other ranks wait for it, and a skipped
  // collective would hang them instead of letting every rank end its step and report.
  void AllReduceSum(runtime::Communicator& comm, void* x, int64_t count) override {
    if (Replaying()) return;
    Record(comm.AllReduceSum(x, count, options_.dtype, stream_));
  }

  void GatherLogitRows(const void* x, const StepPlan&, int64_t width, void* out) override {
    if (Replaying()) return;
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      return kernels::GatherRowsCuda(As<T>(x), logit_rows_, num_logit_rows_, width, As<T>(out),
                                     stream_);
    })));
  }

  absl::Status CopyToHost(const void* src, int64_t count, float* dst) override;
  absl::Status SampleRows(const void* x, const void* lm_head, int64_t rows, int64_t vocab,
                          int64_t hidden, void* scratch, std::span<const RowSampling> params,
                          int32_t* tokens) override;

 private:
  // A cublasLt plan for one GEMM shape: descriptors and the fastest of the heuristic's
  // candidates, timed on first use.
  // Tuned once per bucket of 16 rows (decode batches change size every step, and tuning each
  // size would cost more than it saves); the other sizes of the bucket reuse its algorithm. Up
  // to kernels::kGemvMaxRows rows each size is its own bucket, and our GEMV is timed among the
  // candidates: it streams the weights once, but its arithmetic grows with the rows, and from
  // a few rows on cuBLAS's tensor-core kernels win (measured on the H200: the 7B step at batch
  // 8 took 8.1 ms on the GEMV, 5.1 ms at batch 32 on cuBLAS).
  struct TunedGemm {
    cublasLtMatmulDesc_t operation = nullptr;
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, out = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool has_algo = false;  // a cublasLt algorithm ran for this shape
    bool use_gemv = false;  // the GEMV was faster than it
    int lane = 0;
  };
  // The row-dependent layouts of one size, and whether its bucket's algorithm runs it.
  struct RowLayouts {
    cublasLtMatrixLayout_t a = nullptr, out = nullptr;
    bool usable = false;
  };

  // Null when the bucket's algorithm does not take `m` rows (cuBLAS's plain call serves them).
  const RowLayouts* LayoutsFor(const TunedGemm& tuned, int64_t m, int64_t n, int64_t k);

  static void DestroyTunedGemm(TunedGemm& tuned) {
    if (tuned.out != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatrixLayoutDestroy(tuned.out));
    if (tuned.a != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatrixLayoutDestroy(tuned.a));
    if (tuned.w != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatrixLayoutDestroy(tuned.w));
    if (tuned.operation != nullptr) CUDA_LOG_IF_ERROR(cublasLtMatmulDescDestroy(tuned.operation));
  }

  // The tuned plan of this shape, tuning it now (on these buffers: `out` is overwritten) when
  // the stream is not being captured; null means plain cublasGemmEx.
  const TunedGemm* FindOrTuneGemm(const void* a, const void* w, int64_t m, int64_t n, int64_t k,
                                  void* out);
  absl::Status TuneGemm(const void* a, const void* w, int64_t m, int64_t n, int64_t k, void* out,
                        TunedGemm* tuned);

  // What the ops need to run on one partition (or, for index 0, on their own stream).
  struct Lane {
    const runtime::SmPartition* partition = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t metadata_copied = nullptr;
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t cublas_lt = nullptr;
  };

  // Made with the partition's context current, so every handle belongs to it.
  absl::Status MakeLane(Lane* lane) {
    if (lane->partition != nullptr) {
      ASSIGN_OR_RETURN(lane->stream, lane->partition->CreateStream(options_.stream_priority));
    } else {
      int least = 0;
      int greatest = 0;
      CUDA_RETURN_IF_ERROR(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      CUDA_RETURN_IF_ERROR(
          cudaStreamCreateWithPriority(&lane->stream, cudaStreamNonBlocking,
                                       options_.stream_priority.CudaValue(least, greatest)));
    }
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&lane->metadata_copied, cudaEventDisableTiming));
    CUDA_RETURN_IF_ERROR(cublasCreate(&lane->cublas));
    CUDA_RETURN_IF_ERROR(cublasSetStream(lane->cublas, lane->stream));
    CUDA_RETURN_IF_ERROR(
        cublasSetWorkspace(lane->cublas, cublas_workspace_.get(), kCublasWorkspaceBytes));
    if (lane->partition != nullptr) {
      // cuBLAS picks kernels for the SMs it expects to have.
      CUDA_RETURN_IF_ERROR(cublasSetSmCountTarget(
          lane->cublas, std::min(lane->partition->sm_count(), device_sm_count_)));
    }
    CUDA_RETURN_IF_ERROR(cublasLtCreate(&lane->cublas_lt));
    return absl::OkStatus();
  }

  enum class GraphMode { kNone, kCapturing, kReplaying };
  // (lane, the model's embedding table and the step's first activation, tokens, logit rows,
  // context the attention splits were planned for)
  using GraphKey = std::tuple<int, const void*, const void*, int64_t, int64_t, int64_t>;

  bool Replaying() const { return graph_mode_ == GraphMode::kReplaying; }

  // Ends a capture that its step never finished (an error, or a step cut short).
  void AbandonCapture() {
    if (graph_mode_ == GraphMode::kCapturing) {
      cudaGraph_t graph = nullptr;
      CUDA_LOG_IF_ERROR(cudaStreamEndCapture(stream_, &graph));
      if (graph != nullptr) CUDA_LOG_IF_ERROR(cudaGraphDestroy(graph));
    }
    graph_mode_ = GraphMode::kNone;
    graph_ = nullptr;
  }

  void DropGraphs() {
    for (auto& [key, graph] : graphs_) {
      if (graph.exec != nullptr) CUDA_LOG_IF_ERROR(cudaGraphExecDestroy(graph.exec));
    }
    graphs_.clear();
  }

  void DropLeastRecentGraph() {
    auto oldest = std::min_element(graphs_.begin(), graphs_.end(), [](const auto& a, const auto& b) {
      return a.second.used < b.second.used;
    });
    if (oldest == graphs_.end()) return;
    if (oldest->second.exec != nullptr) CUDA_LOG_IF_ERROR(cudaGraphExecDestroy(oldest->second.exec));
    graphs_.erase(oldest);
  }

  // Ends the step's capture (keeping the graph) or replay: the step's work is then launched.
  void FinishGraph();

  // Keeps the first error of the step for CopyToHost.
  void Record(absl::Status status) {
    if (error_.ok() && !status.ok()) error_ = std::move(status);
  }

  bool CheckKv(const kernels::PagedKv& kv) {
    if (kv.head_dim % 8 != 0 || kv.tokens_per_block < 1 ||
        kv.block_bytes < 2 * kv.tokens_per_block * kv.head_dim * 2) {
      Record(absl::InvalidArgumentError(absl::StrCat(
          "CUDA backend: KV layout of head_dim ", kv.head_dim, ", ", kv.tokens_per_block,
          " tokens per block and ", kv.block_bytes,
          "-byte blocks is not supported (head_dim a multiple of 8, 16-bit elements)")));
      return false;
    }
    return true;
  }

  // Host -> device, finished before returning (weights, rope tables).
  absl::Status CopyToDevice(void* dst, const void* src, int64_t bytes) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  // Splits are only made while rows x heads < kSplitBlocksPerSm x SMs, which keeps
  // rows x heads x splits under twice that; head_dim is at most 256.
  int64_t PartialCapacityFloats() const {
    return 2 * kSplitBlocksPerSm * int64_t{device_sm_count_} * (256 + 2);
  }

  const CudaOpsOptions options_;
  const cudaDataType_t element_type_;  // of options_.dtype, for cuBLAS
  CudaKernelChoices choices_;
  const int device_sm_count_;
  // Lanes by partition id + 1 (0: the ops' own stream); the current one's handles below.
  std::vector<std::unique_ptr<Lane>> lanes_;
  int lane_index_ = 0;
  int sm_count_;  // of the current partition
  cudaStream_t stream_ = nullptr;
  cudaEvent_t metadata_copied_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublas_lt_ = nullptr;
  // Tuned decode GEMMs by (lane, m, n, k); a shape whose tuning failed maps to null.
  std::map<std::tuple<int, int64_t, int64_t, int64_t>, std::unique_ptr<TunedGemm>> tuned_gemms_;
  // By (lane, m, n, k).
  std::map<std::tuple<int, int64_t, int64_t, int64_t>, RowLayouts> row_layouts_;
  Buffer cublas_workspace_;
  Buffer attention_partial_;
  absl::Status error_;

  // The current step's metadata: host staging, device copy, and pointers into the latter.
  PinnedBuffer metadata_host_;
  Buffer metadata_device_;
  PinnedBuffer logits_host_;
  // Sampling: the rows' parameters on their way to the device, and the tokens on their way back.
  PinnedBuffer sampling_host_;
  Buffer sampling_device_;
  std::vector<kernels::PrefillTile> tiles_;
  int64_t num_tokens_ = 0;
  int64_t num_logit_rows_ = 0;
  int64_t num_tiles_ = 0;
  int64_t max_q_len_ = 0;
  int64_t max_context_ = 0;
  const int32_t* tokens_ = nullptr;
  const int32_t* positions_ = nullptr;
  const int32_t* token_seq_ = nullptr;
  const kernels::StepSequence* seqs_ = nullptr;
  const int32_t* block_tables_ = nullptr;
  const int32_t* logit_rows_ = nullptr;
  const kernels::PrefillTile* tiles_device_ = nullptr;

  // Decode graphs.
  bool graph_eligible_ = false;  // this step is a decode step and graphs are on
  int64_t split_context_ = 0;    // the context the attention plans its splits for
  GraphMode graph_mode_ = GraphMode::kNone;
  cudaGraphExec_t graph_ = nullptr;  // being replayed
  GraphKey capture_key_;
  struct CachedGraph {
    cudaGraphExec_t exec = nullptr;  // null: seen once, not captured yet
    uint64_t used = 0;               // graph_clock_ at its last use
  };
  std::map<GraphKey, CachedGraph> graphs_;
  uint64_t graph_clock_ = 0;
};

const CudaOpsImpl::TunedGemm* CudaOpsImpl::FindOrTuneGemm(const void* a, const void* w, int64_t m,
                                                          int64_t n, int64_t k, void* out) {
  const int64_t bucket = m <= kernels::kGemvMaxRows ? m : (m + 15) / 16 * 16;
  const auto shape = std::make_tuple(lane_index_, bucket, n, k);
  const auto found = tuned_gemms_.find(shape);
  if (found != tuned_gemms_.end()) return found->second.get();
  if (graph_mode_ != GraphMode::kNone || !error_.ok()) return nullptr;
  auto tuned = std::make_unique<TunedGemm>();
  tuned->lane = lane_index_;
  const absl::Status status = TuneGemm(a, w, m, n, k, out, tuned.get());
  if (!status.ok()) {
    // cuBLAS's plain call still serves this shape.
    DestroyTunedGemm(*tuned);
    tuned = nullptr;
  }
  return (tuned_gemms_[shape] = std::move(tuned)).get();
}

const CudaOpsImpl::RowLayouts* CudaOpsImpl::LayoutsFor(const TunedGemm& tuned, int64_t m,
                                                       int64_t n, int64_t k) {
  const auto key = std::make_tuple(tuned.lane, m, n, k);
  auto found = row_layouts_.find(key);
  if (found == row_layouts_.end()) {
    RowLayouts layouts;
    absl::Status status =
        CUDA_STATUS(cublasLtMatrixLayoutCreate(&layouts.a, element_type_, k, m, k));
    if (status.ok()) {
      status = CUDA_STATUS(cublasLtMatrixLayoutCreate(&layouts.out, element_type_, n, m, n));
    }
    if (status.ok()) {
      cublasLtMatmulHeuristicResult_t check{};
      layouts.usable = cublasLtMatmulAlgoCheck(cublas_lt_, tuned.operation, tuned.w, layouts.a,
                                               layouts.out, layouts.out, &tuned.algo,
                                               &check) == CUBLAS_STATUS_SUCCESS &&
                       check.workspaceSize <= kCublasWorkspaceBytes;
    }
    found = row_layouts_.emplace(key, layouts).first;
  }
  return found->second.usable ? &found->second : nullptr;
}

absl::Status CudaOpsImpl::TuneGemm(const void* a, const void* w, int64_t m, int64_t n, int64_t k,
                                   void* out, TunedGemm* tuned) {
  CUDA_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&tuned->operation, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T;
  CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(tuned->operation, CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &transpose, sizeof(transpose)));
  // Column-major views: w as stored is [k, n], a is [k, m], out is [n, m].
  CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&tuned->w, element_type_, k, n, k));
  CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&tuned->a, element_type_, k, m, k));
  CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&tuned->out, element_type_, n, m, n));
  cublasLtMatmulPreference_t preference = nullptr;
  CUDA_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace = kCublasWorkspaceBytes;
  absl::Status status = CUDA_STATUS(cublasLtMatmulPreferenceSetAttribute(
      preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  cublasLtMatmulHeuristicResult_t candidates[kTuningCandidates];
  int found = 0;
  if (status.ok()) {
    status = CUDA_STATUS(cublasLtMatmulAlgoGetHeuristic(
        cublas_lt_, tuned->operation, tuned->w, tuned->a, tuned->out, tuned->out, preference,
        kTuningCandidates, candidates, &found));
  }
  CUDA_LOG_IF_ERROR(cublasLtMatmulPreferenceDestroy(preference));
  RETURN_IF_ERROR(status);

  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  status = CUDA_STATUS(cudaEventCreate(&stop));
  // Milliseconds of kTuningRuns runs of `run` after one warm-up; a failing warm-up leaves
  // `status` alone and gives -1 (that candidate does not run here; others may).
  auto time_runs = [&](const std::function<absl::Status()>& run) -> float {
    if (!run().ok()) return -1;
    status.Update(CUDA_STATUS(cudaEventRecord(start, stream_)));
    for (int r = 0; r < kTuningRuns && status.ok(); ++r) status.Update(run());
    status.Update(CUDA_STATUS(cudaEventRecord(stop, stream_)));
    status.Update(CUDA_STATUS(cudaEventSynchronize(stop)));
    float ms = 0;
    status.Update(CUDA_STATUS(cudaEventElapsedTime(&ms, start, stop)));
    return ms;
  };
  const float alpha = 1.0f;
  const float beta = 0.0f;
  float best_ms = 0;
  int best = -1;
  for (int i = 0; i < found && status.ok(); ++i) {
    if (candidates[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const float ms = time_runs([&] {
      return CUDA_STATUS(cublasLtMatmul(cublas_lt_, tuned->operation, &alpha, w, tuned->w, a,
                                        tuned->a, &beta, out, tuned->out, out, tuned->out,
                                        &candidates[i].algo, cublas_workspace_.get(),
                                        kCublasWorkspaceBytes, stream_));
    });
    if (status.ok() && ms >= 0 && (best < 0 || ms < best_ms)) {
      best = i;
      best_ms = ms;
    }
  }
  if (status.ok() && choices_.gemv_for_few_rows && kernels::GemvSupports(m, k)) {
    const float ms = time_runs([&] {
      return CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
        return kernels::GemvCuda<T>(As<T>(a), As<T>(w), nullptr, m, n, k, As<T>(out), stream_);
      }));
    });
    tuned->use_gemv = status.ok() && ms >= 0 && (best < 0 || ms < best_ms);
  }
  CUDA_LOG_IF_ERROR(cudaEventDestroy(start));
  if (stop != nullptr) CUDA_LOG_IF_ERROR(cudaEventDestroy(stop));
  RETURN_IF_ERROR(status);
  if (best < 0 && !tuned->use_gemv) {
    return absl::NotFoundError("no cublasLt algorithm ran for this GEMM");
  }
  if (best >= 0) {
    tuned->algo = candidates[best].algo;
    tuned->has_algo = true;
  }
  return absl::OkStatus();
}

void CudaOpsImpl::FinishGraph() {
  if (graph_mode_ == GraphMode::kCapturing) {
    cudaGraph_t graph = nullptr;
    Record(CUDA_STATUS(cudaStreamEndCapture(stream_, &graph)));
    cudaGraphExec_t exec = nullptr;
    if (error_.ok()) Record(CUDA_STATUS(cudaGraphInstantiate(&exec, graph, 0)));
    if (graph != nullptr) CUDA_LOG_IF_ERROR(cudaGraphDestroy(graph));
    if (error_.ok()) {
      graphs_[capture_key_] = {.exec = exec, .used = ++graph_clock_};
      graph_ = exec;
    } else if (exec != nullptr) {
      CUDA_LOG_IF_ERROR(cudaGraphExecDestroy(exec));
    }
  }
  if (graph_ != nullptr && error_.ok()) Record(CUDA_STATUS(cudaGraphLaunch(graph_, stream_)));
  graph_mode_ = GraphMode::kNone;
  graph_ = nullptr;
}

absl::Status CudaOpsImpl::BeginStep(const StepPlan& plan) {
  AbandonCapture();
  graph_eligible_ = false;
  error_ = absl::OkStatus();
  // A partition's context is current already; setting the device would replace it.
  if (lane_index_ == 0) CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  const int64_t n = plan.num_tokens();
  if (static_cast<int64_t>(plan.positions.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("step plan has ", n, " tokens but ", plan.positions.size(), " positions"));
  }
  max_q_len_ = 0;
  max_context_ = 0;
  tiles_.clear();
  int64_t covered = 0;
  for (int64_t s = 0; s < plan.num_seqs(); ++s) {
    const kernels::StepSequence& seq = plan.seqs[s];
    if (seq.q_len < 1 || seq.q_start != covered || seq.context_len < seq.q_len ||
        seq.table_offset < 0 || seq.table_offset > static_cast<int64_t>(plan.block_tables.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan sequence ", s, " (q_start ", seq.q_start, ", q_len ", seq.q_len,
                       ", context_len ", seq.context_len, ", table_offset ", seq.table_offset,
                       ") does not follow the previous one or its table is out of range"));
    }
    covered += seq.q_len;
    max_q_len_ = std::max<int64_t>(max_q_len_, seq.q_len);
    max_context_ = std::max<int64_t>(max_context_, seq.context_len);
    // Last tiles first: they see the most keys, so the longest blocks start earliest.
    for (int32_t first = (seq.q_len - 1) / kernels::kPrefillTileRows * kernels::kPrefillTileRows;
         first >= 0; first -= kernels::kPrefillTileRows) {
      tiles_.push_back({.seq = static_cast<int32_t>(s), .first_row = first});
    }
  }
  if (covered != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("step plan sequences cover ", covered, " of its ", n, " tokens"));
  }
  for (int32_t row : plan.logit_rows) {
    if (row < 0 || row >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan logit row ", row, " is outside its ", n, " tokens"));
    }
  }

  StepLayout layout;
  int64_t at = 0;
  auto place = [&at](int64_t words) {
    const int64_t offset = at;
    at += Align4(words);
    return offset;
  };
  layout.tokens = place(n);
  layout.positions = place(n);
  layout.token_seq = place(n);
  layout.seqs = place(plan.num_seqs() * 4);
  layout.logit_rows = place(static_cast<int64_t>(plan.logit_rows.size()));
  layout.tiles = place(static_cast<int64_t>(tiles_.size()) * 2);
  layout.block_tables = place(static_cast<int64_t>(plan.block_tables.size()));
  layout.total = std::max<int64_t>(at, 4);
  static_assert(sizeof(kernels::StepSequence) == 16 && sizeof(kernels::PrefillTile) == 8);

  // The previous step's copy must be done before its staging memory is rewritten.
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(metadata_copied_));
  const int64_t bytes = layout.total * 4;
  if (bytes > metadata_device_.bytes) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    const int64_t grown = std::max({bytes, 2 * metadata_device_.bytes, kInitialMetadataBytes});
    RETURN_IF_ERROR(metadata_host_.Reserve(static_cast<size_t>(grown)));
    DropGraphs();  // they point into the old buffer
    metadata_device_ = {};
    ASSIGN_OR_RETURN(metadata_device_, Allocate(grown));
    // Allocate made the primary context current again.
    if (const runtime::SmPartition* partition = lanes_[lane_index_]->partition) {
      RETURN_IF_ERROR(partition->Enter());
    }
  }
  auto* host = static_cast<int32_t*>(metadata_host_.data());
  std::memcpy(host + layout.tokens, plan.tokens.data(), n * 4);
  std::memcpy(host + layout.positions, plan.positions.data(), n * 4);
  for (int64_t s = 0; s < plan.num_seqs(); ++s) {
    std::fill_n(host + layout.token_seq + plan.seqs[s].q_start, plan.seqs[s].q_len,
                static_cast<int32_t>(s));
  }
  std::memcpy(host + layout.seqs, plan.seqs.data(), plan.seqs.size() * 16);
  // Plain copies: OpenMP teams in every lane's thread would fight over the cores, and a
  // megabyte of ids copies in tens of microseconds.
  std::memcpy(host + layout.block_tables, plan.block_tables.data(),
              plan.block_tables.size() * 4);
  std::memcpy(host + layout.logit_rows, plan.logit_rows.data(), plan.logit_rows.size() * 4);
  std::memcpy(host + layout.tiles, tiles_.data(), tiles_.size() * 8);
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(metadata_device_.get(), host, static_cast<size_t>(bytes),
                                       cudaMemcpyHostToDevice, stream_));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(metadata_copied_, stream_));

  const auto* device = metadata_device_.as<int32_t>();
  tokens_ = device + layout.tokens;
  positions_ = device + layout.positions;
  token_seq_ = device + layout.token_seq;
  seqs_ = reinterpret_cast<const kernels::StepSequence*>(device + layout.seqs);
  block_tables_ = device + layout.block_tables;
  logit_rows_ = device + layout.logit_rows;
  tiles_device_ = reinterpret_cast<const kernels::PrefillTile*>(device + layout.tiles);
  num_tokens_ = n;
  num_logit_rows_ = static_cast<int64_t>(plan.logit_rows.size());
  num_tiles_ = static_cast<int64_t>(tiles_.size());
  // A replayed graph keeps the splits it was captured with: decode steps plan them for the
  // context rounded up to kSplitContextQuantum, so that one graph serves while the context
  // grows up to that (and a step gives the same numbers with graphs or without).
  const bool decode = max_q_len_ == 1;
  graph_eligible_ = choices_.decode_graphs && decode;
  split_context_ = decode ? (max_context_ + kSplitContextQuantum - 1) / kSplitContextQuantum *
                                kSplitContextQuantum
                          : max_context_;
  return absl::OkStatus();
}

void CudaOpsImpl::Attention(const void* qkv, const StepPlan&, int64_t row_stride,
                            int64_t num_q_heads, int64_t layer, float scale,
                            const kernels::PagedKv& kv, void* out) {
  if (Replaying() || !CheckKv(kv)) return;
  if (num_q_heads % kv.num_kv_heads != 0) {
    Record(absl::InvalidArgumentError(absl::StrCat("CUDA backend: ", num_q_heads,
                                                   " query heads do not group over ",
                                                   kv.num_kv_heads, " KV heads")));
    return;
  }
  if (choices_.tiled_prefill_attention && max_q_len_ > 1 &&
      kernels::PrefillAttentionSupportsHeadDim(kv.head_dim)) {
    Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
      const kernels::PrefillAttentionParams<T> params{.qkv = As<T>(qkv),
                                                      .row_stride = row_stride,
                                                      .seqs = seqs_,
                                                      .tiles = tiles_device_,
                                                      .num_tiles = num_tiles_,
                                                      .block_tables = block_tables_,
                                                      .num_q_heads = num_q_heads,
                                                      .layer = layer,
                                                      .scale = scale,
                                                      .kv = kv,
                                                      .out = As<T>(out)};
      return kernels::PrefillAttentionCuda(params, stream_);
    })));
    return;
  }
  if (!kernels::PagedAttentionSupportsHeadDim(kv.head_dim)) {
    Record(absl::InvalidArgumentError(absl::StrCat(
        "CUDA backend: attention supports head_dim 64, 128 and 256, not ", kv.head_dim)));
    return;
  }
  // Too few (row, head) blocks to fill the GPU: split each row's context.
  const int64_t blocks = num_tokens_ * num_q_heads;
  const int64_t target_blocks = kSplitBlocksPerSm * sm_count_;
  int64_t splits = 1;
  if (blocks < target_blocks) {
    splits = std::min((target_blocks + blocks - 1) / blocks,
                      (split_context_ + kMinSplitKeys - 1) / kMinSplitKeys);
    splits = std::max<int64_t>(splits, 1);
  }
  int64_t split_keys = (split_context_ + splits - 1) / splits;
  split_keys = (split_keys + 15) / 16 * 16;
  splits = (split_context_ + split_keys - 1) / split_keys;
  if (kernels::PagedAttentionPartialFloats(num_tokens_, num_q_heads, static_cast<int>(splits),
                                           kv.head_dim) > PartialCapacityFloats()) {
    Record(absl::InternalError("CUDA backend: attention splits exceed their scratch memory"));
    return;
  }
  Record(CUDA_STATUS(WithElementType(options_.dtype, [&]<typename T>(std::type_identity<T>) {
    const kernels::PagedAttentionParams<T> params{.qkv = As<T>(qkv),
                                                  .row_stride = row_stride,
                                                  .token_seq = token_seq_,
                                                  .seqs = seqs_,
                                                  .block_tables = block_tables_,
                                                  .num_tokens = num_tokens_,
                                                  .num_q_heads = num_q_heads,
                                                  .layer = layer,
                                                  .scale = scale,
                                                  .kv = kv,
                                                  .num_splits = static_cast<int>(splits),
                                                  .split_keys = static_cast<int>(split_keys),
                                                  .partial = attention_partial_.as<float>(),
                                                  .out = As<T>(out)};
    return kernels::PagedAttentionCuda(params, stream_);
  })));
}

absl::Status CudaOpsImpl::CopyToHost(const void* src, int64_t count, float* dst) {
  FinishGraph();
  const size_t bytes = static_cast<size_t>(count) * 2;
  if (error_.ok()) {
    // Growing waits for the stream first: the old buffer may be the target of a copy.
    Record(CUDA_STATUS(cudaStreamSynchronize(stream_)));
    Record(logits_host_.Reserve(bytes));
  }
  if (error_.ok()) {
    Record(CUDA_STATUS(
        cudaMemcpyAsync(logits_host_.data(), src, bytes, cudaMemcpyDeviceToHost, stream_)));
  }
  Record(CUDA_STATUS(cudaStreamSynchronize(stream_)));
  RETURN_IF_ERROR(error_);
  const auto* bits = static_cast<const uint16_t*>(logits_host_.data());
  constexpr int64_t kChunk = int64_t{1} << 16;  // elements a thread converts at a time
#pragma omp parallel for if (count > (int64_t{1} << 18))
  for (int64_t begin = 0; begin < count; begin += kChunk) {
    ConvertToFloat(bits + begin, options_.dtype,
                   static_cast<size_t>(std::min(kChunk, count - begin)), dst + begin);
  }
  return absl::OkStatus();
}

absl::Status CudaOpsImpl::SampleRows(const void* x, const void* lm_head, int64_t rows,
                                     int64_t vocab, int64_t hidden, void* scratch,
                                     std::span<const RowSampling> params, int32_t* tokens) {
  static_assert(sizeof(RowSampling) == sizeof(kernels::SampleRowParams) &&
                offsetof(RowSampling, temperature) ==
                    offsetof(kernels::SampleRowParams, temperature) &&
                offsetof(RowSampling, top_k) == offsetof(kernels::SampleRowParams, top_k) &&
                offsetof(RowSampling, top_p) == offsetof(kernels::SampleRowParams, top_p) &&
                offsetof(RowSampling, seed) == offsetof(kernels::SampleRowParams, seed));
  if (static_cast<int64_t>(params.size()) != rows) {
    Record(absl::InvalidArgumentError(
        absl::StrCat(rows, " rows to sample but ", params.size(), " sampling parameters")));
  }
  // fp32 logits straight from the GEMM (part of a decode step's graph).
  if (!Replaying() && error_.ok()) {
    const float alpha = 1.0f;
    const float beta = 0.0f;
    Record(CUDA_STATUS(cublasGemmEx(
        cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(vocab), static_cast<int>(rows),
        static_cast<int>(hidden), &alpha, lm_head, element_type_, static_cast<int>(hidden), x,
        element_type_, static_cast<int>(hidden), &beta, scratch, CUDA_R_32F,
        static_cast<int>(vocab), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)));
  }
  FinishGraph();
  // Parameters in, tokens out, through one pinned and one device buffer: [params | tokens].
  const size_t params_bytes = static_cast<size_t>(rows) * sizeof(RowSampling);
  const size_t bytes = params_bytes + static_cast<size_t>(rows) * sizeof(int32_t);
  if (error_.ok() && static_cast<int64_t>(bytes) > sampling_device_.bytes) {
    // The previous step's copies are done: each step waits for its tokens.
    Record(sampling_host_.Reserve(bytes * 2));
    sampling_device_ = {};
    absl::StatusOr<Buffer> grown = Allocate(static_cast<int64_t>(bytes * 2));
    if (grown.ok()) {
      sampling_device_ = *std::move(grown);
    } else {
      Record(grown.status());
    }
    if (const runtime::SmPartition* partition = lanes_[lane_index_]->partition) {
      Record(partition->Enter());
    }
  }
  if (error_.ok()) {
    auto* host = static_cast<char*>(sampling_host_.data());
    auto* device = static_cast<char*>(sampling_device_.get());
    std::memcpy(host, params.data(), params_bytes);
    Record(CUDA_STATUS(
        cudaMemcpyAsync(device, host, params_bytes, cudaMemcpyHostToDevice, stream_)));
    Record(CUDA_STATUS(kernels::SampleCuda(
        static_cast<const float*>(scratch), rows, vocab,
        reinterpret_cast<const kernels::SampleRowParams*>(device),
        reinterpret_cast<int32_t*>(device + params_bytes), stream_)));
    Record(CUDA_STATUS(cudaMemcpyAsync(host + params_bytes, device + params_bytes,
                                       bytes - params_bytes, cudaMemcpyDeviceToHost, stream_)));
  }
  Record(CUDA_STATUS(cudaStreamSynchronize(stream_)));
  RETURN_IF_ERROR(error_);
  std::memcpy(tokens, static_cast<const char*>(sampling_host_.data()) + params_bytes,
              bytes - params_bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaOps>> MakeCudaOps(const CudaOpsOptions& options) {
  if (options.dtype != DType::kBFloat16 && options.dtype != DType::kFloat16) {
    return absl::InvalidArgumentError(absl::StrCat("dtype ", AsAbsl(DTypeName(options.dtype)),
                                                   " is not supported by the CUDA backend; use "
                                                   "bfloat16 or float16"));
  }
  int count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (options.device < 0 || options.device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " visible)"));
  }
  int sm_count = 0;
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, options.device));
  auto ops = std::make_unique<CudaOpsImpl>(options, sm_count);
  RETURN_IF_ERROR(ops->Init());
  return std::unique_ptr<CudaOps>(std::move(ops));
}

}  // namespace muxserve::engine
