#include <cmath>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {
namespace {

// HF rotate_half: pairs (x[i], x[i + d/2]).
void RotateHead(float* x, const float* cos_t, const float* sin_t, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x0 = x[i];
    const float x1 = x[i + half];
    x[i] = x0 * cos_t[i] - x1 * sin_t[i];
    x[i + half] = x1 * cos_t[i] + x0 * sin_t[i];
  }
}

}  // namespace

void RopeCpu(float* qkv, const int32_t* positions, const float* inv_freq, int64_t n,
             int64_t row_stride, int64_t num_q_heads, int64_t num_kv_heads, int64_t k_offset,
             int64_t head_dim) {
  const int64_t half = head_dim / 2;
#pragma omp parallel for if (n > 4)
  for (int64_t t = 0; t < n; ++t) {
    float cos_t[512];
    float sin_t[512];
    for (int64_t i = 0; i < half; ++i) {
      // HF computes the angle in float32: position * inv_freq, then cos/sin.
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_t[i] = std::cos(angle);
      sin_t[i] = std::sin(angle);
    }
    float* row = qkv + t * row_stride;
    for (int64_t h = 0; h < num_q_heads; ++h) RotateHead(row + h * head_dim, cos_t, sin_t, half);
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      RotateHead(row + k_offset + h * head_dim, cos_t, sin_t, half);
    }
  }
}

}  // namespace muxserve::kernels
