// The HF transformers fixtures of tests/model/testdata/forward (make_forward.py): each holds a
// synthetic model's config.json and seed, prompts, HF's (fp32, eager) logits, its 64 greedy
// tokens and its five best tokens after each of 64 fed (teacher-forced) tokens. Shared by the
// CPU parity test and the CUDA one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/model/model_spec.h"
#include "nlohmann/json.hpp"
#include "test_models.h"

namespace muxserve::engine::hf {

inline constexpr int kNewTokens = 64;

struct Fixture {
  nlohmann::json json;
  model::ModelSpec spec;
  std::filesystem::path dir;
};

// The fixtures' folder: where the build saw it, else relative to the working directory (a
// bundle run from the repository root on another machine).
inline std::filesystem::path FixtureDir() {
  const std::filesystem::path built(MUXSERVE_FORWARD_TESTDATA);
  return std::filesystem::exists(built) ? built : "tests/model/testdata/forward";
}

// Loads forward/<name>.json and writes its model (float32) into a temporary directory.
inline Fixture LoadFixture(const std::string& name) {
  Fixture fixture;
  std::ifstream in(FixtureDir() / (name + ".json"));
  EXPECT_TRUE(in.good()) << name;
  fixture.json = nlohmann::json::parse(in);
  absl::StatusOr<model::ModelSpec> spec =
      model::ParseModelSpec(fixture.json["config"].dump(), name + ".json config");
  EXPECT_TRUE(spec.ok()) << spec.status();
  fixture.spec = *spec;
  fixture.dir = testing::WriteTinyModel("hf_parity_" + name, fixture.spec,
                                        fixture.json["seed"].get<uint64_t>());
  return fixture;
}

// ||got - want|| / ||want||; the largest seen goes to `*largest`.
inline double RelativeError(std::span<const float> got, const std::vector<float>& want,
                            double* largest) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  *largest = std::max(*largest, std::sqrt(diff / norm));
  return std::sqrt(diff / norm);
}

inline int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// The `k` best token ids, best first.
inline std::vector<int32_t> TopK(std::span<const float> logits, size_t k) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  return ids;
}

}  // namespace muxserve::engine::hf
