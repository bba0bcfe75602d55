// Synthetic models written into a temporary folder for engine tests, and a sink that collects a
// request's stream.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "gtest/gtest.h"
#include "muxserve/engine/request.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/synthetic.h"

namespace muxserve::engine::testing {

inline model::ModelSpec TinySpec(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads,
                                 int64_t intermediate) {
  model::ModelSpec spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 320;
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = 512;
  spec.rms_norm_eps = 1e-5;
  spec.dtype = DType::kFloat32;
  spec.eos_token_ids = {258, 256};
  return spec;
}

// Writes the model under the gtest temp dir.
inline std::filesystem::path WriteTinyModel(const std::string& name, const model::ModelSpec& spec,
                                            uint64_t seed) {
  // ctest runs tests as parallel processes: each writes its own copy.
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("muxserve_engine_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const absl::Status status = model::WriteSyntheticModel(
      dir, {.spec = spec, .seed = seed, .weight_dtype = DType::kFloat32});
  EXPECT_TRUE(status.ok()) << status;
  return dir;
}

// Collects one request's deltas (text and token ids) and its end.
class Collector : public RequestSink {
 public:
  void OnDelta(StreamDelta delta) override {
    absl::MutexLock lock(&mu_);
    text_ += delta.text;
    ids_.insert(ids_.end(), delta.token_ids.begin(), delta.token_ids.end());
    ++deltas_;
  }
  void OnFinish(const FinishInfo& info) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(finish_.has_value()) << "OnFinish called twice";
    finish_ = info;
  }
  FinishInfo Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finish_.has_value(); };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60)));
    return finish_.value_or(FinishInfo{.reason = FinishReason::kError});
  }
  std::vector<int32_t> ids() {
    absl::MutexLock lock(&mu_);
    return ids_;
  }
  std::string text() {
    absl::MutexLock lock(&mu_);
    return text_;
  }

 private:
  absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> ids_ ABSL_GUARDED_BY(mu_);
  int deltas_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<FinishInfo> finish_ ABSL_GUARDED_BY(mu_);
};

}  // namespace muxserve::engine::testing
