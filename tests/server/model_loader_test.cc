#include "muxserve/server/model_loader.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

config::SyntheticSpec TinySpec(uint64_t seed) {
  config::SyntheticSpec synthetic;
  model::ModelSpec& spec = synthetic.spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 300;
  spec.hidden_size = 32;
  spec.intermediate_size = 64;
  spec.num_layers = 2;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.head_dim = 16;
  spec.max_position_embeddings = 128;
  spec.rms_norm_eps = 1e-5;
  spec.eos_token_ids = {258, 256};
  synthetic.seed = seed;
  return synthetic;
}

class ModelLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("muxserve_model_loader_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Nothing but finished models may be left in the synthetic directory.
  void ExpectNoPartialDirectories() {
    for (const auto& entry : fs::directory_iterator(dir_)) {
      EXPECT_EQ(entry.path().filename().string().rfind('.', 0), std::string::npos) << entry.path();
    }
  }

  config::ModelConfig SyntheticModel(const std::string& name, uint64_t seed) {
    config::ModelConfig model;
    model.name = name;
    model.synthetic = TinySpec(seed);
    return model;
  }

  fs::path dir_;
};

TEST_F(ModelLoaderTest, WritesASyntheticModelOnceAndReusesIt) {
  absl::StatusOr<fs::path> written =
      EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, dir_ / "tiny");
  EXPECT_TRUE(fs::is_regular_file(*written / "config.json"));
  EXPECT_TRUE(fs::is_regular_file(*written / "tokenizer.json"));
  ExpectNoPartialDirectories();

  const auto first_write = fs::last_write_time(*written / "config.json");
  // A file we drop in shows whether the directory was replaced.
  std::ofstream(*written / "sentinel") << "x";
  absl::StatusOr<fs::path> again =
      EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(fs::exists(*again / "sentinel"));
  EXPECT_EQ(fs::last_write_time(*again / "config.json"), first_write);
}

TEST_F(ModelLoaderTest, RewritesWhenTheSeedOrShapeChanges) {
  ASSERT_TRUE(EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16).ok());
  std::ofstream(dir_ / "tiny" / "sentinel") << "x";
  ASSERT_TRUE(EnsureSyntheticModel(dir_, "tiny", TinySpec(2), DType::kBFloat16).ok());
  EXPECT_FALSE(fs::exists(dir_ / "tiny" / "sentinel"));

  std::ofstream(dir_ / "tiny" / "sentinel") << "x";
  config::SyntheticSpec wider = TinySpec(2);
  wider.spec.num_layers = 3;
  ASSERT_TRUE(EnsureSyntheticModel(dir_, "tiny", wider, DType::kBFloat16).ok());
  EXPECT_FALSE(fs::exists(dir_ / "tiny" / "sentinel"));
  absl::StatusOr<model::ModelSpec> spec = model::LoadModelSpec(dir_ / "tiny");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_layers, 3);
  ExpectNoPartialDirectories();
}

TEST_F(ModelLoaderTest, ReplacesAnInterruptedDirectory) {
  // A directory without config.json (e.g. from an older crash) is not a model.
  fs::create_directories(dir_ / "tiny");
  std::ofstream(dir_ / "tiny" / "model.safetensors") << "truncated";
  absl::StatusOr<fs::path> written =
      EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(fs::is_regular_file(*written / "config.json"));
}

TEST_F(ModelLoaderTest, DeviceWeightsWriteNoSafetensorsAndReportTheSeed) {
  config::ModelConfig model = SyntheticModel("tiny", 5);
  model.synthetic->device_weights = true;
  absl::StatusOr<PreparedModel> prepared = PrepareModel(model, dir_, config::Backend::kCpu);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->random_weights_seed, std::optional<uint64_t>(5));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "tiny" / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(dir_ / "tiny" / "model.safetensors"));

  // Switching to written weights rewrites the directory, with them; and back again.
  model.synthetic->device_weights = false;
  prepared = PrepareModel(model, dir_, config::Backend::kCpu);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_FALSE(prepared->random_weights_seed.has_value());
  EXPECT_TRUE(fs::is_regular_file(dir_ / "tiny" / "model.safetensors"));
  model.synthetic->device_weights = true;
  ASSERT_TRUE(PrepareModel(model, dir_, config::Backend::kCpu).ok());
  EXPECT_FALSE(fs::exists(dir_ / "tiny" / "model.safetensors"));
  ExpectNoPartialDirectories();
}

TEST_F(ModelLoaderTest, PreparesASyntheticModelForTheCpu) {
  config::ModelConfig model = SyntheticModel("tiny", 1);
  model.chat_template = "chatml";
  model.max_context = 64;
  absl::StatusOr<PreparedModel> prepared = PrepareModel(model, dir_, config::Backend::kCpu);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->dir, dir_ / "tiny");
  EXPECT_EQ(prepared->spec.num_layers, 2);
  EXPECT_EQ(prepared->dtype, DType::kFloat32);
  EXPECT_EQ(prepared->max_context, 64);
  ASSERT_NE(prepared->tokenizer, nullptr);
  EXPECT_FALSE(prepared->tokenizer->Encode("hello", false).empty());
  ASSERT_TRUE(prepared->chat_template.has_value());
  EXPECT_EQ(prepared->chat_template->name(), "chatml");
}

// The CUDA backend computes in 16 bits: the configured dtype, else the checkpoint's (a float32
// checkpoint in bfloat16); a configured float32 is refused before any weight is read.
TEST_F(ModelLoaderTest, CudaComputesInTheConfiguredOrCheckpoint16BitDtype) {
  config::ModelConfig model = SyntheticModel("tiny", 1);
  absl::StatusOr<PreparedModel> prepared = PrepareModel(model, dir_, config::Backend::kCuda);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->dtype, DType::kBFloat16);  // the synthetic checkpoint's

  model.dtype = DType::kFloat16;
  prepared = PrepareModel(model, dir_, config::Backend::kCuda);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->dtype, DType::kFloat16);
  EXPECT_EQ(prepared->spec.dtype, DType::kFloat16);  // written in the configured dtype

  model.dtype = DType::kFloat32;
  const absl::Status status = PrepareModel(model, dir_, config::Backend::kCuda).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("dtype float32 is not supported by the CUDA backend; use bfloat16 or "
                        "float16"));

  ASSERT_TRUE(EnsureSyntheticModel(dir_, "f32", TinySpec(1), DType::kFloat32).ok());
  config::ModelConfig f32;
  f32.name = "f32";
  f32.path = dir_ / "f32";
  prepared = PrepareModel(f32, dir_, config::Backend::kCuda);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->spec.dtype, DType::kFloat32);
  EXPECT_EQ(prepared->dtype, DType::kBFloat16);
}

TEST_F(ModelLoaderTest, MaxContextDefaultsToTheModelsPositions) {
  absl::StatusOr<PreparedModel> prepared =
      PrepareModel(SyntheticModel("tiny", 1), dir_, config::Backend::kCpu);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->max_context, 128);
}

TEST_F(ModelLoaderTest, MaxContextBeyondThePositionsFails) {
  config::ModelConfig model = SyntheticModel("tiny", 1);
  model.max_context = 4096;
  absl::Status status = PrepareModel(model, dir_, config::Backend::kCpu).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("max_context"));
}

TEST_F(ModelLoaderTest, CorruptModelDirectoryFailsWithTheFile) {
  fs::create_directories(dir_ / "broken");
  std::ofstream(dir_ / "broken" / "config.json") << "{ not json";
  config::ModelConfig model;
  model.name = "broken";
  model.path = dir_ / "broken";
  absl::Status status = PrepareModel(model, dir_, config::Backend::kCpu).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("config.json"));
}

TEST_F(ModelLoaderTest, MissingTokenizerFails) {
  ASSERT_TRUE(EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16).ok());
  fs::remove(dir_ / "tiny" / "tokenizer.json");
  config::ModelConfig model;
  model.name = "tiny";
  model.path = dir_ / "tiny";
  absl::Status status = PrepareModel(model, dir_, config::Backend::kCpu).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("tokenizer.json"));
}

TEST_F(ModelLoaderTest, UnrecognizedTemplateOnlyDisablesChat) {
  ASSERT_TRUE(EnsureSyntheticModel(dir_, "tiny", TinySpec(1), DType::kBFloat16).ok());
  // A template of no family we render.
  std::ofstream(dir_ / "tiny" / "tokenizer_config.json")
      << R"({"chat_template": "{% for m in messages %}<<{{ m.content }}>>{% endfor %}"})";
  config::ModelConfig model;
  model.name = "tiny";
  model.path = dir_ / "tiny";
  absl::StatusOr<PreparedModel> prepared = PrepareModel(model, dir_, config::Backend::kCpu);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_FALSE(prepared->chat_template.has_value());
  EXPECT_FALSE(prepared->chat_unavailable_reason.empty());
}

}  // namespace
}  // namespace muxserve::server
