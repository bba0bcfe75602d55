#include <cmath>

#include "kernels/paged_attention.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kUnroll = 4;  // keys each lane group loads before using the first
constexpr float kLog2e = 1.4426950408889634f;

// Lanes of a warp split into groups of kHeadDim / 8 lanes; a group holds one key (16 bytes per
// lane) at a time. Each group keeps its own online-softmax state over the keys it visits; the
// groups of all warps are merged through shared memory at the end. Scores are in log2 units.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) PagedAttentionKernel(PagedAttentionParams<T> p) {
  constexpr int kLanesPerKey = kHeadDim / 8;
  constexpr int kGroups = 32 / kLanesPerKey;  // keys a warp holds at once
  constexpr int kSlots = kWarps * kGroups;    // keys the block holds at once
  __shared__ float slot_max[kSlots];
  __shared__ float slot_sum[kSlots];
  __shared__ float slot_acc[kSlots][kHeadDim];
  BeginKernel();

  const int row = blockIdx.x;
  const int head = blockIdx.y;
  const int split = blockIdx.z;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int group = lane / kLanesPerKey;
  const int part = lane % kLanesPerKey;
  const int slot = warp * kGroups + group;

  const StepSequence seq = p.seqs[p.token_seq[row]];
  const int visible = seq.context_len - seq.q_len + (row - seq.q_start) + 1;
  const int begin = split * p.split_keys;
  // The last split takes every key left, so a launch planned for a shorter context (a replayed
  // CUDA graph) still covers all of it.
  const int end = split == p.num_splits - 1 ? visible : min(visible, begin + p.split_keys);
  const int kv_head = head / static_cast<int>(p.num_q_heads / p.kv.num_kv_heads);
  const int32_t* table = p.block_tables + seq.table_offset;

  float q[8];
  ToFloat8(Load8(p.qkv + static_cast<int64_t>(row) * p.row_stride + head * kHeadDim + part * 8), q);
  const float scale = p.scale * kLog2e;
#pragma unroll
  for (int j = 0; j < 8; ++j) q[j] *= scale;

  float running_max = -INFINITY;
  float running_sum = 0.0f;
  float acc[8] = {};
  // The loop bound is the same for the whole warp, so the shuffles below never diverge.
  for (int base = begin + warp * kGroups; base < end; base += kSlots * kUnroll) {
    // Keys past the end load the last key again (cached) and are masked: no branch, so every
    // table read and then every K/V load of the step is in flight at once.
    Vec8<T> k_raw[kUnroll], v_raw[kUnroll];
    bool valid[kUnroll];
    const T* k_rows[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int token = base + u * kSlots + group;
      valid[u] = token < end;
      k_rows[u] = KvRowAs<T>(p.kv, table, p.layer, kv_head, valid[u] ? token : end - 1, false);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      k_raw[u] = Load8(k_rows[u] + part * 8);
      v_raw[u] = Load8(k_rows[u] + p.kv.tokens_per_block * kHeadDim + part * 8);
    }
    float score[kUnroll];
    float step_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float k[8];
      ToFloat8(k_raw[u], k);
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) dot += q[j] * k[j];
#pragma unroll
      for (int offset = kLanesPerKey / 2; offset > 0; offset >>= 1) {
        dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      }
      score[u] = valid[u] ? dot : -INFINITY;
      step_max = fmaxf(step_max, score[u]);
    }
    const float new_max = fmaxf(running_max, step_max);
    if (new_max != -INFINITY) {  // -inf: nothing visible to this group yet
      const float correction = exp2f(running_max - new_max);  // 0 while running_max is -inf
      running_sum *= correction;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] *= correction;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const float weight = exp2f(score[u] - new_max);  // 0 for invalid keys
        running_sum += weight;
        float v[8];
        ToFloat8(v_raw[u], v);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += weight * v[j];
      }
      running_max = new_max;
    }
  }

#pragma unroll
  for (int j = 0; j < 8; ++j) slot_acc[slot][part * 8 + j] = acc[j];
  if (part == 0) {
    slot_max[slot] = running_max;
    slot_sum[slot] = running_sum;
  }
  __syncthreads();

  float block_max = -INFINITY;
  for (int s = 0; s < kSlots; ++s) block_max = fmaxf(block_max, slot_max[s]);
  float block_sum = 0.0f;
  if (block_max != -INFINITY) {
    for (int s = 0; s < kSlots; ++s) block_sum += slot_sum[s] * exp2f(slot_max[s] - block_max);
  }
  const int64_t out_offset = (static_cast<int64_t>(row) * p.num_q_heads + head) * kHeadDim;
  const int64_t partial_offset =
      ((static_cast<int64_t>(row) * p.num_q_heads + head) * p.num_splits + split) * (kHeadDim + 2);
  for (int d = threadIdx.x; d < kHeadDim; d += kThreads) {
    float value = 0.0f;
    if (block_max != -INFINITY) {
      for (int s = 0; s < kSlots; ++s) value += slot_acc[s][d] * exp2f(slot_max[s] - block_max);
    }
    if (p.num_splits == 1) {
      p.out[out_offset + d] = FromFloat<T>(value / block_sum);
    } else {
      p.partial[partial_offset + d] = value;
    }
  }
  if (p.num_splits > 1 && threadIdx.x == 0) {
    p.partial[partial_offset + kHeadDim] = block_max;
    p.partial[partial_offset + kHeadDim + 1] = block_sum;
  }
}

// Merges the splits of one (row, head): each split's (max, sum, unnormalized output).
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) CombineSplitsKernel(PagedAttentionParams<T> p) {
  BeginKernel();
  const int64_t index = static_cast<int64_t>(blockIdx.x) * p.num_q_heads + blockIdx.y;
  const float* partial = p.partial + index * p.num_splits * (kHeadDim + 2);
  float overall_max = -INFINITY;
  for (int s = 0; s < p.num_splits; ++s) {
    overall_max = fmaxf(overall_max, partial[s * (kHeadDim + 2) + kHeadDim]);
  }
  float total = 0.0f;
  for (int s = 0; s < p.num_splits; ++s) {
    const float split_max = partial[s * (kHeadDim + 2) + kHeadDim];
    if (split_max != -INFINITY) {
      total += partial[s * (kHeadDim + 2) + kHeadDim + 1] * exp2f(split_max - overall_max);
    }
  }
  for (int d = threadIdx.x; d < kHeadDim; d += kThreads) {
    float value = 0.0f;
    for (int s = 0; s < p.num_splits; ++s) {
      const float split_max = partial[s * (kHeadDim + 2) + kHeadDim];
      if (split_max != -INFINITY) {
        value += partial[s * (kHeadDim + 2) + d] * exp2f(split_max - overall_max);
      }
    }
    p.out[index * kHeadDim + d] = FromFloat<T>(value / total);
  }
}

template <typename T, int kHeadDim>
cudaError_t Launch(const PagedAttentionParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned int>(p.num_tokens), static_cast<unsigned int>(p.num_q_heads),
                  static_cast<unsigned int>(p.num_splits));
  const cudaError_t launched =
      LaunchKernel(PagedAttentionKernel<T, kHeadDim>, grid, kThreads, 0, stream, p);
  if (launched != cudaSuccess || p.num_splits == 1) return launched;
  return LaunchKernel(CombineSplitsKernel<T, kHeadDim>, dim3(grid.x, grid.y), kThreads, 0, stream,
                      p);
}

}  // namespace

bool PagedAttentionSupportsHeadDim(int64_t head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256;
}

int64_t PagedAttentionPartialFloats(int64_t num_tokens, int64_t num_q_heads, int num_splits,
                                    int64_t head_dim) {
  return num_splits > 1 ? num_tokens * num_q_heads * num_splits * (head_dim + 2) : 0;
}

template <typename T>
cudaError_t PagedAttentionCuda(const PagedAttentionParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_splits < 1 || p.split_keys < 1 || p.kv.num_kv_heads < 1 ||
      p.num_q_heads % p.kv.num_kv_heads != 0 || (p.num_splits > 1 && p.partial == nullptr) ||
      p.row_stride % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  switch (p.kv.head_dim) {
    case 64:
      return Launch<T, 64>(p, stream);
    case 128:
      return Launch<T, 128>(p, stream);
    case 256:
      return Launch<T, 256>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template cudaError_t PagedAttentionCuda(const PagedAttentionParams<bf16>&, cudaStream_t);
template cudaError_t PagedAttentionCuda(const PagedAttentionParams<fp16>&, cudaStream_t);

}  // namespace muxserve::kernels
