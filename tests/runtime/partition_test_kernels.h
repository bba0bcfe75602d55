// Kernels of partition_gpu_test: plain launchers, so that the test itself stays C++20 host code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace muxserve::runtime::test_kernels {

// `blocks` blocks of 1024 threads (at most two fit an SM) each write the id of the SM they ran
// on to sm_ids[block] and then stay resident for `spin_ns`.
cudaError_t LaunchRecordSmIds(int* sm_ids, int blocks, int64_t spin_ns, cudaStream_t stream);

// `blocks` blocks that each keep their SM busy for `spin_ns`.
cudaError_t LaunchSpin(int blocks, int64_t spin_ns, cudaStream_t stream);

}  // namespace muxserve::runtime::test_kernels
