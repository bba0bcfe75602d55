// NCCL communicators over the visible GPUs: every rank gets the sum, in bf16 and float32. Runs
// with one GPU too (a group of one); skips without a device.
#include <cuda_runtime_api.h>

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/common/dtype.h"
#include "muxserve/runtime/communicator.h"

namespace muxserve::runtime {
namespace {

TEST(NcclCommunicatorGpuTest, AllReduceSumsOnEveryGpu) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  std::vector<int> devices;
  for (int d = 0; d < count && d < 8; ++d) devices.push_back(d);
  const int size = static_cast<int>(devices.size());
  auto comms = MakeNcclCommunicators(devices);
  ASSERT_TRUE(comms.ok()) << comms.status();
  constexpr int64_t kCount = 3 << 20;  // 6 MiB of bf16: the size of one 7B all-reduce at 768 rows
  std::vector<absl::Status> status(size);
  std::vector<std::vector<float>> got(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      auto run = [&]() -> absl::Status {
        if (cudaSetDevice(devices[r]) != cudaSuccess) return absl::InternalError("cudaSetDevice");
        std::vector<uint16_t> host(kCount);
        for (int64_t i = 0; i < kCount; ++i) {
          host[i] = FloatToBf16(static_cast<float>((i % 7) + r));  // small integers: exact sums
        }
        void* data = nullptr;
        cudaStream_t stream = nullptr;
        if (cudaMalloc(&data, kCount * 2) != cudaSuccess || cudaStreamCreate(&stream) != cudaSuccess ||
            cudaMemcpy(data, host.data(), kCount * 2, cudaMemcpyHostToDevice) != cudaSuccess) {
          return absl::InternalError("CUDA set-up failed");
        }
        absl::Status reduced = (*comms)[r]->AllReduceSum(data, kCount, DType::kBFloat16, stream);
        if (reduced.ok() && (cudaStreamSynchronize(stream) != cudaSuccess ||
                             cudaMemcpy(host.data(), data, kCount * 2, cudaMemcpyDeviceToHost) !=
                                 cudaSuccess)) {
          reduced = absl::InternalError("CUDA copy back failed");
        }
        got[r].resize(kCount);
        for (int64_t i = 0; i < kCount; ++i) got[r][i] = Bf16ToFloat(host[i]);
        cudaStreamDestroy(stream);
        cudaFree(data);
        return reduced;
      };
      status[r] = run();
    });
  }
  for (std::thread& t : threads) t.join();
  const float rank_sum = static_cast<float>(size * (size - 1) / 2);
  for (int r = 0; r < size; ++r) {
    ASSERT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
    for (int64_t i = 0; i < kCount; i += 4099) {
      ASSERT_EQ(got[r][i], static_cast<float>(size * (i % 7)) + rank_sum) << "rank " << r;
    }
  }
}

}  // namespace
}  // namespace muxserve::runtime
