#include <cblas.h>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {

void GemmCpu(const float* a, const float* w, const float* bias, int64_t m, int64_t n, int64_t k,
             float* out) {
  float beta = 0.0f;
  if (bias != nullptr) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = bias[j];
    }
    beta = 1.0f;
  }
  if (m == 1) {
    // A matrix-vector product: sgemv streams the weights once, without GEMM packing.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, w,
                static_cast<int>(k), a, 1, beta, out, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(k), w, static_cast<int>(k), beta, out,
              static_cast<int>(n));
}

}  // namespace muxserve::kernels
