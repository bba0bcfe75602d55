#include <cmath>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {

void SiluMulCpu(const float* gate_up, int64_t n, int64_t inter, float* out) {
#pragma omp parallel for if (n > 4)
  for (int64_t i = 0; i < n; ++i) {
    const float* gate = gate_up + i * 2 * inter;
    const float* up = gate + inter;
    for (int64_t j = 0; j < inter; ++j) {
      out[i * inter + j] = gate[j] / (1.0f + std::exp(-gate[j])) * up[j];
    }
  }
}

}  // namespace muxserve::kernels
