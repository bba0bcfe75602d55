// Device helpers shared by the CUDA kernels: the 16-bit element types (bf16, fp16) and their
// float conversions, vectors of 16 bytes, warp reductions, and the address of a K/V row in the
// head-wise pool (layout in kernels/paged_kv.h; pool elements of the kernel's element type).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/paged_kv.h"

namespace muxserve::kernels {

using bf16 = __nv_bfloat16;
using fp16 = __half;

// The element types of weights, activations and KV: every kernel that touches them is
// instantiated for both, and accumulates in float32.
template <typename T>
inline constexpr bool kIsElement16 = std::is_same_v<T, bf16> || std::is_same_v<T, fp16>;

#ifdef __CUDACC__

__device__ __forceinline__ float ToFloat(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToFloat(fp16 v) { return __half2float(v); }

// Round to nearest even.
template <typename T>
__device__ __forceinline__ T FromFloat(float v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __float2bfloat16(v);
  } else {
    return __float2half(v);
  }
}

// Two elements in one 32-bit register: __nv_bfloat162 or __half2.
template <typename T>
using Pair = std::conditional_t<std::is_same_v<T, bf16>, __nv_bfloat162, __half2>;

__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
__device__ __forceinline__ float2 ToFloat2(__half2 v) { return __half22float2(v); }

template <typename T>
__device__ __forceinline__ Pair<T> FromFloat2(float low, float high) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __floats2bfloat162_rn(low, high);
  } else {
    return __floats2half2_rn(low, high);
  }
}

// Eight elements, moved as one 16-byte access.
template <typename T>
struct alignas(16) Vec8 {
  static_assert(kIsElement16<T>);
  uint4 raw;
};

template <typename T>
__device__ __forceinline__ void ToFloat8(const Vec8<T>& v, float out[8]) {
  const auto* pairs = reinterpret_cast<const Pair<T>*>(&v.raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = ToFloat2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

template <typename T>
__device__ __forceinline__ Vec8<T> FromFloat8(const float in[8]) {
  Vec8<T> v;
  auto* pairs = reinterpret_cast<Pair<T>*>(&v.raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) pairs[i] = FromFloat2<T>(in[2 * i], in[2 * i + 1]);
  return v;
}

template <typename T>
__device__ __forceinline__ Vec8<T> Load8(const T* p) {
  return Vec8<T>{*reinterpret_cast<const uint4*>(p)};
}

template <typename T>
__device__ __forceinline__ void Store8(T* p, const Vec8<T>& v) {
  *reinterpret_cast<uint4*>(p) = v.raw;
}

// Programmatic dependent launch: kernels launched with LaunchKernel may start while the
// kernel before them on the stream still runs, so each first waits for it (its memory then
// visible) and lets the kernel after it get scheduled early in turn. Kernels touch no global
// memory before BeginKernel.
__device__ __forceinline__ void BeginKernel() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the whole block; every thread gets it. `scratch` holds one float per warp.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// First element of the K row (V when `value`) of `token` of a sequence for (layer, kv_head).
// 32-bit division: token counts stay far below 2^31 and 64-bit division costs several times more.
template <typename T>
__device__ __forceinline__ T* KvRowAs(const PagedKv& kv, const int32_t* table, int64_t layer,
                                      int64_t kv_head, int token, bool value) {
  const int tokens_per_block = static_cast<int>(kv.tokens_per_block);
  const int token_block = token / tokens_per_block;
  const int32_t block = table[(token_block * kv.num_layers + layer) * kv.num_kv_heads + kv_head];
  auto* base = static_cast<char*>(kv.pool) + static_cast<int64_t>(block) * kv.block_bytes;
  return reinterpret_cast<T*>(base) +
         static_cast<int64_t>((value ? tokens_per_block : 0) + token % tokens_per_block) *
             kv.head_dim;
}

// Launches `kernel` for programmatic dependent launch (see BeginKernel) and returns the launch
// error, if any.
template <typename... Params, typename... Args>
cudaError_t LaunchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                         cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
  return launched != cudaSuccess ? launched : cudaGetLastError();
}

#endif  // __CUDACC__

// Blocks of `threads` covering `count` items, capped so huge counts use grid-stride loops.
inline unsigned int BlocksFor(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace muxserve::kernels
