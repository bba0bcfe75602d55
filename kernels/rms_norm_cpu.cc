#include <cmath>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {
namespace {

void NormalizeRow(const float* x, const float* weight, int64_t hidden, float eps, float* out) {
  double sum_sq = 0;
  for (int64_t j = 0; j < hidden; ++j) sum_sq += static_cast<double>(x[j]) * x[j];
  const float inv_rms = 1.0f / std::sqrt(static_cast<float>(sum_sq / hidden) + eps);
  for (int64_t j = 0; j < hidden; ++j) out[j] = x[j] * inv_rms * weight[j];
}

}  // namespace

void RmsNormCpu(const float* x, const float* weight, int64_t n, int64_t hidden, float eps,
                float* out) {
#pragma omp parallel for if (n > 4)
  for (int64_t i = 0; i < n; ++i) NormalizeRow(x + i * hidden, weight, hidden, eps, out + i * hidden);
}

void AddRmsNormCpu(float* residual, const float* delta, const float* weight, int64_t n,
                   int64_t hidden, float eps, float* out) {
#pragma omp parallel for if (n > 4)
  for (int64_t i = 0; i < n; ++i) {
    float* row = residual + i * hidden;
    for (int64_t j = 0; j < hidden; ++j) row[j] += delta[i * hidden + j];
    NormalizeRow(row, weight, hidden, eps, out + i * hidden);
  }
}

}  // namespace muxserve::kernels
