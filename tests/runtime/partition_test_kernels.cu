#include "partition_test_kernels.h"

namespace muxserve::runtime::test_kernels {
namespace {

constexpr int kThreadsPerBlock = 1024;

__device__ uint64_t GlobalNanoseconds() {
  uint64_t now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

__device__ void SpinFor(int64_t spin_ns) {
  const uint64_t start = GlobalNanoseconds();
  while (GlobalNanoseconds() - start < static_cast<uint64_t>(spin_ns)) {
  }
}

__global__ void RecordSmIds(int* sm_ids, int64_t spin_ns) {
  if (threadIdx.x == 0) {
    unsigned int sm_id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm_id));
    sm_ids[blockIdx.x] = static_cast<int>(sm_id);
  }
  SpinFor(spin_ns);
}

__global__ void Spin(int64_t spin_ns) { SpinFor(spin_ns); }

}  // namespace

cudaError_t LaunchRecordSmIds(int* sm_ids, int blocks, int64_t spin_ns, cudaStream_t stream) {
  RecordSmIds<<<blocks, kThreadsPerBlock, 0, stream>>>(sm_ids, spin_ns);
  return cudaGetLastError();
}

cudaError_t LaunchSpin(int blocks, int64_t spin_ns, cudaStream_t stream) {
  Spin<<<blocks, kThreadsPerBlock, 0, stream>>>(spin_ns);
  return cudaGetLastError();
}

}  // namespace muxserve::runtime::test_kernels
