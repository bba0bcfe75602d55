#include "kernels/sampling.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;  // radix selection takes 8 bits of the key a pass

struct SampleShared {
  float scratch[kWarps];
  int32_t index_scratch[kWarps];
  float bins[kBins];
  uint32_t chosen_bin;
  float remaining;
  int32_t drawing_thread;
};

// Unsigned key that orders like the float: larger float, larger key.
__device__ __forceinline__ uint32_t OrderedKey(float value) {
  const uint32_t bits = __float_as_uint(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ float BlockMax(float v, SampleShared& s) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float result = s.scratch[0];
  for (int w = 1; w < kWarps; ++w) result = fmaxf(result, s.scratch[w]);
  return result;
}

// Index of the largest value, the lowest index among equal maxima.
__device__ int32_t BlockArgMax(const float* row, int64_t vocab, SampleShared& s) {
  float best = -INFINITY;
  int32_t best_index = INT32_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    if (row[i] > best) {  // strided ascending: the first maximum this thread sees wins
      best = row[i];
      best_index = static_cast<int32_t>(i);
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int32_t other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (other > best || (other == best && other_index < best_index)) {
      best = other;
      best_index = other_index;
    }
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    s.scratch[threadIdx.x >> 5] = best;
    s.index_scratch[threadIdx.x >> 5] = best_index;
  }
  __syncthreads();
  best = s.scratch[0];
  best_index = s.index_scratch[0];
  for (int w = 1; w < kWarps; ++w) {
    if (s.scratch[w] > best || (s.scratch[w] == best && s.index_scratch[w] < best_index)) {
      best = s.scratch[w];
      best_index = s.index_scratch[w];
    }
  }
  return best_index;
}

// Softmax numerator of a logit, relative to the row's maximum.
__device__ __forceinline__ float Weight(float logit, float max_logit, float inv_temperature) {
  return __expf((logit - max_logit) * inv_temperature);
}

// The largest key K such that the keys >= K (among those >= floor_key) reach `target`: counted
// one each (kWeighted false: the target-th largest key), or by their softmax weights (true: the
// nucleus cut). Four passes of 8 bits from the top, each a histogram of the keys that share the
// bits chosen so far. Where float rounding leaves the target unreached, all keys are kept.
template <bool kWeighted>
__device__ uint32_t SelectKey(const float* row, int64_t vocab, float target, uint32_t floor_key,
                              float max_logit, float inv_temperature, SampleShared& s) {
  uint32_t prefix = 0;
  uint32_t prefix_mask = 0;
  if (threadIdx.x == 0) s.remaining = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kBins; b += kThreads) s.bins[b] = 0.0f;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float logit = row[i];
      const uint32_t key = OrderedKey(logit);
      if (key >= floor_key && (key & prefix_mask) == prefix) {
        atomicAdd(&s.bins[(key >> shift) & (kBins - 1)],
                  kWeighted ? Weight(logit, max_logit, inv_temperature) : 1.0f);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float above = 0.0f;
      int chosen = -1;
      int lowest_nonempty = 0;
      for (int b = kBins - 1; b >= 0; --b) {
        if (s.bins[b] > 0.0f) lowest_nonempty = b;
        if (chosen < 0 && above + s.bins[b] >= s.remaining) chosen = b;
        if (chosen < 0) above += s.bins[b];
      }
      if (chosen < 0) {
        chosen = lowest_nonempty;
        s.remaining = s.bins[chosen];
      } else {
        s.remaining -= above;
      }
      s.chosen_bin = static_cast<uint32_t>(chosen);
    }
    __syncthreads();
    prefix |= s.chosen_bin << shift;
    prefix_mask |= static_cast<uint32_t>(kBins - 1) << shift;
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* logits, int64_t vocab, const SampleRowParams* params,
                 int32_t* tokens) {
  BeginKernel();
  __shared__ SampleShared s;
  const float* row = logits + blockIdx.x * vocab;
  const SampleRowParams p = params[blockIdx.x];
  if (p.temperature <= 0.0f || p.top_k == 1) {
    const int32_t best = BlockArgMax(row, vocab, s);
    if (threadIdx.x == 0) tokens[blockIdx.x] = best;
    return;
  }
  float max_logit = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) max_logit = fmaxf(max_logit, row[i]);
  max_logit = BlockMax(max_logit, s);
  const float inv_temperature = 1.0f / p.temperature;

  uint32_t cut = 0;  // keep the keys >= cut
  if (p.top_k > 0 && p.top_k < vocab) {
    cut =
        SelectKey<false>(row, vocab, static_cast<float>(p.top_k), 0, max_logit, inv_temperature, s);
  }
  if (p.top_p < 1.0f) {
    float kept_mass = 0.0f;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      if (OrderedKey(row[i]) >= cut) kept_mass += Weight(row[i], max_logit, inv_temperature);
    }
    kept_mass = BlockSum(kept_mass, s.scratch);
    cut = SelectKey<true>(row, vocab, p.top_p * kept_mass, cut, max_logit, inv_temperature, s);
  }

  // The draw: each thread sums the kept weights of its contiguous chunk; an exclusive scan over
  // the threads places the chunks on [0, total); the thread whose chunk holds the target walks it.
  const int64_t chunk = (vocab + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * chunk < vocab ? threadIdx.x * chunk : vocab;
  const int64_t end = begin + chunk < vocab ? begin + chunk : vocab;
  float mass = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    if (OrderedKey(row[i]) >= cut) mass += Weight(row[i], max_logit, inv_temperature);
  }
  const int lane = threadIdx.x & 31;
  float inclusive = mass;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  __syncthreads();
  if (lane == 31) s.scratch[threadIdx.x >> 5] = inclusive;
  if (threadIdx.x == 0) s.drawing_thread = -1;
  __syncthreads();
  float before = inclusive - mass;
  float total = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    if (w < static_cast<int>(threadIdx.x >> 5)) before += s.scratch[w];
    total += s.scratch[w];
  }
  const double uniform = static_cast<double>(SplitMix64(p.seed) >> 11) * 0x1.0p-53;
  const float target = static_cast<float>(uniform * total);
  // The last chunk that starts at or below the target: unique, and it exists since the first
  // non-empty chunk starts at 0.
  if (mass > 0.0f && before <= target) atomicMax(&s.drawing_thread, static_cast<int>(threadIdx.x));
  __syncthreads();
  if (static_cast<int>(threadIdx.x) != s.drawing_thread) return;
  float left = target - before;
  int64_t pick = -1;
  for (int64_t i = begin; i < end; ++i) {
    if (OrderedKey(row[i]) < cut) continue;
    pick = i;
    left -= Weight(row[i], max_logit, inv_temperature);
    if (left < 0.0f) break;
  }
  tokens[blockIdx.x] = static_cast<int32_t>(pick);
}

}  // namespace

cudaError_t SampleCuda(const float* logits, int64_t rows, int64_t vocab,
                       const SampleRowParams* params, int32_t* tokens, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (vocab <= 0 || vocab > INT32_MAX) return cudaErrorInvalidValue;
  return LaunchKernel(SampleKernel, dim3(static_cast<unsigned int>(rows)), dim3(kThreads), 0,
                      stream, logits, vocab, params, tokens);
}

}  // namespace muxserve::kernels
