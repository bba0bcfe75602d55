#include "kernels/kv_append.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 128;

// One block per token row; each thread moves 16-byte chunks of K and V.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    KvAppendKernel(const T* qkv, const int32_t* token_seq, const StepSequence* seqs,
                   const int32_t* block_tables, int64_t row_stride, int64_t k_offset,
                   int64_t v_offset, int64_t layer, PagedKv kv) {
  BeginKernel();
  const int64_t row = blockIdx.x;
  const StepSequence seq = seqs[token_seq[row]];
  const int64_t position = seq.context_len - seq.q_len + (row - seq.q_start);
  const int32_t* table = block_tables + seq.table_offset;
  const int64_t chunks_per_head = kv.head_dim / 8;
  const int64_t chunks = kv.num_kv_heads * chunks_per_head;
  const T* src = qkv + row * row_stride;
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    const int64_t head = c / chunks_per_head;
    const int64_t column = (c % chunks_per_head) * 8;
    Store8(KvRowAs<T>(kv, table, layer, head, position, false) + column,
           Load8(src + k_offset + head * kv.head_dim + column));
    Store8(KvRowAs<T>(kv, table, layer, head, position, true) + column,
           Load8(src + v_offset + head * kv.head_dim + column));
  }
}

}  // namespace

template <typename T>
cudaError_t KvAppendCuda(const T* qkv, const int32_t* token_seq, const StepSequence* seqs,
                         const int32_t* block_tables, int64_t n, int64_t row_stride,
                         int64_t k_offset, int64_t v_offset, int64_t layer, const PagedKv& kv,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (kv.head_dim % 8 != 0 || row_stride % 8 != 0 || k_offset % 8 != 0 || v_offset % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  return LaunchKernel(KvAppendKernel<T>, n, kThreads, 0, stream, qkv, token_seq, seqs, block_tables,
                      row_stride, k_offset, v_offset, layer, kv);
}

template cudaError_t KvAppendCuda(const bf16*, const int32_t*, const StepSequence*, const int32_t*,
                                  int64_t, int64_t, int64_t, int64_t, int64_t, const PagedKv&,
                                  cudaStream_t);
template cudaError_t KvAppendCuda(const fp16*, const int32_t*, const StepSequence*, const int32_t*,
                                  int64_t, int64_t, int64_t, int64_t, int64_t, const PagedKv&,
                                  cudaStream_t);

}  // namespace muxserve::kernels
