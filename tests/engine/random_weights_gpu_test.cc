// CudaOps::LoadWeight of random tensors (model::Weights::Random): drawn on the device with the
// requested mean and std, the same for the same seed. Skipped without a CUDA device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/device.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

struct Moments {
  double mean = 0;
  double std = 0;
};

Moments MomentsOf(const std::vector<float>& values) {
  double sum = 0;
  double squares = 0;
  for (float v : values) {
    sum += v;
    squares += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(values.size());
  const double mean = sum / n;
  return {mean, std::sqrt(std::max(0.0, squares / n - mean * mean))};
}

class RandomWeightsGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto devices = runtime::ListCudaDevices();
    if (!devices.ok() || devices->empty()) GTEST_SKIP() << "no CUDA device";
    auto ops = MakeCudaOps({});
    ASSERT_TRUE(ops.ok()) << ops.status();
    ops_ = std::move(*ops);
    auto weights = model::Weights::Random(spec_, 5);
    ASSERT_TRUE(weights.ok()) << weights.status();
    weights_ = std::move(*weights);
  }

  // The named tensors loaded (concatenated) into device memory, back as floats.
  std::vector<float> Load(const std::vector<std::string>& names) {
    std::vector<WeightSlice> parts;
    int64_t count = 0;
    for (const std::string& name : names) {
      auto info = weights_->Get(name);
      EXPECT_TRUE(info.ok()) << info.status();
      if (!info.ok()) return {};
      parts.push_back({.tensor = *info});
      count += (*info)->NumElements();
    }
    auto buffer = ops_->LoadWeight(parts);
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    if (!buffer.ok()) return {};
    EXPECT_EQ(buffer->bytes, count * 2);
    std::vector<float> values(static_cast<size_t>(count));
    const absl::Status copied = ops_->CopyToHost(buffer->get(), count, values.data());
    EXPECT_TRUE(copied.ok()) << copied;
    return values;
  }

  // Large enough that sample moments sit within a few percent of the requested ones.
  const model::ModelSpec spec_ = testing::TinySpec(1, 256, 4, 2, 512);
  std::unique_ptr<CudaOps> ops_;
  std::unique_ptr<model::Weights> weights_;
};

TEST_F(RandomWeightsGpuTest, ValuesHaveTheRequestedMeanAndStd) {
  for (const std::string name :
       {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight"}) {
    SCOPED_TRACE(name);
    const model::RandomInit& init = *(*weights_->Get(name))->random;
    const std::vector<float> values = Load({name});
    ASSERT_FALSE(values.empty());
    const Moments moments = MomentsOf(values);
    // Sample error of the mean ~ std / sqrt(n) (n >= 256), plus bf16 rounding.
    EXPECT_NEAR(moments.mean, init.mean, 0.25 * init.std + 0.01 * std::abs(init.mean));
    EXPECT_NEAR(moments.std, init.std, 0.1 * init.std);
  }
}

TEST_F(RandomWeightsGpuTest, FusedPartsKeepTheirOwnScalesAndRepeat) {
  const std::vector<std::string> qkv = {"model.layers.0.self_attn.q_proj.weight",
                                        "model.layers.0.self_attn.k_proj.weight",
                                        "model.layers.0.self_attn.v_proj.weight"};
  const std::vector<float> first = Load(qkv);
  ASSERT_EQ(first.size(), static_cast<size_t>((256 + 2 * 128) * 256));
  EXPECT_EQ(Load(qkv), first);  // the same seeds give the same values
  // k and v are drawn from their own seeds: their values differ.
  const std::vector<float> k(first.begin() + 256 * 256, first.begin() + 384 * 256);
  const std::vector<float> v(first.begin() + 384 * 256, first.end());
  EXPECT_NE(k, v);
  const double want_std = 1.0 / std::sqrt(256.0);
  EXPECT_NEAR(MomentsOf(k).std, want_std, 0.1 * want_std);
  EXPECT_NEAR(MomentsOf(v).std, want_std, 0.1 * want_std);
}

// Tensor-parallel shards: a row range and a column range of a drawn tensor, and of a bf16 and an
// fp32 checkpoint tensor, hold the values of the same elements of the whole tensor.
TEST_F(RandomWeightsGpuTest, SlicesHoldTheValuesOfTheWholeTensor) {
  const model::TensorInfo* down = *weights_->Get("model.layers.0.mlp.down_proj.weight");
  const int64_t rows = down->shape[0], cols = down->shape[1];  // [256, 512]
  std::vector<float> bf16_values(rows * cols), f32_values(rows * cols);
  std::vector<uint16_t> bf16_bits(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    f32_values[i] = static_cast<float>((i * 7919) % 1009) / 1009.0f - 0.5f;
    bf16_bits[i] = FloatToBf16(f32_values[i]);
    bf16_values[i] = Bf16ToFloat(bf16_bits[i]);
  }
  const model::TensorInfo bf16_tensor{
      .dtype = DType::kBFloat16, .shape = {rows, cols},
      .data = std::as_bytes(std::span<const uint16_t>(bf16_bits))};
  const model::TensorInfo f32_tensor{.dtype = DType::kFloat32, .shape = {rows, cols},
                                     .data = std::as_bytes(std::span<const float>(f32_values))};
  auto whole = [&](const model::TensorInfo* tensor) {
    const WeightSlice part{.tensor = tensor};
    auto buffer = ops_->LoadWeight({&part, 1});
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    std::vector<float> values(rows * cols);
    EXPECT_TRUE(ops_->CopyToHost(buffer->get(), rows * cols, values.data()).ok());
    return values;
  };
  for (const model::TensorInfo* tensor : {down, &bf16_tensor, &f32_tensor}) {
    const std::vector<float> all = whole(tensor);
    // Rows [64, 128) then columns [128, 384): one buffer of both, as a fused shard would be.
    const WeightSlice parts[] = {{.tensor = tensor, .row_begin = 64, .rows = 64},
                                 {.tensor = tensor, .col_begin = 128, .cols = 256}};
    auto buffer = ops_->LoadWeight(parts);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    const int64_t count = 64 * cols + rows * 256;
    ASSERT_EQ(buffer->bytes, count * 2);
    std::vector<float> got(count, std::nanf(""));
    ASSERT_TRUE(ops_->CopyToHost(buffer->get(), count, got.data()).ok());
    for (int64_t r = 0; r < 64; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(got[r * cols + c], all[(64 + r) * cols + c]) << "row slice " << r << "," << c;
      }
    }
    const float* columns = got.data() + 64 * cols;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < 256; ++c) {
        ASSERT_EQ(columns[r * 256 + c], all[r * cols + 128 + c]) << "column slice " << r << "," << c;
      }
    }
  }
  const WeightSlice outside{.tensor = down, .row_begin = 200, .rows = 100};
  EXPECT_EQ(ops_->LoadWeight({&outside, 1}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace muxserve::engine
