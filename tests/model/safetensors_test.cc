#include "muxserve/model/safetensors.h"

#include <cstring>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::model {
namespace {

using ::testing::HasSubstr;

std::vector<std::byte> Bytes(std::string_view text) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

std::vector<std::byte> FloatBytes(const std::vector<float>& values, DType dtype) {
  std::vector<std::byte> bytes(values.size() * DTypeSize(dtype));
  ConvertFromFloat(values.data(), values.size(), dtype, bytes.data());
  return bytes;
}

std::vector<TensorToWrite> SampleTensors() {
  return {
      {"zeta.weight", DType::kFloat32, {2, 3}, FloatBytes({1, 2, 3, 4, 5, 6}, DType::kFloat32)},
      {"alpha.weight", DType::kBFloat16, {3}, FloatBytes({0.5f, -1.0f, 2.0f}, DType::kBFloat16)},
      {"mid.bias", DType::kFloat16, {1, 1, 1}, FloatBytes({0.25f}, DType::kFloat16)},
      {"empty", DType::kFloat32, {0, 4}, {}},
      {"scalar", DType::kFloat32, {}, FloatBytes({7.0f}, DType::kFloat32)},
  };
}

// A file built by hand: header JSON (padded to 8) and a data buffer.
std::string RawFile(const std::string& header, size_t data_bytes) {
  std::string file(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(file.data(), &length, 8);  // the test hosts are little-endian, as the format
  file += header;
  file.append(data_bytes, '\x01');
  return file;
}

absl::Status ParseRaw(const std::string& file) {
  return ParseSafetensors(std::as_bytes(std::span<const char>(file)), "raw.safetensors").status();
}

TEST(SafetensorsTest, WriteThenOpenRoundTrips) {
  testing::TempDir dir;
  const auto path = dir.path() / "model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, SampleTensors()).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  const auto& tensors = (*file)->tensors();
  ASSERT_EQ(tensors.size(), 5u);
  for (const TensorToWrite& expected : SampleTensors()) {
    ASSERT_TRUE(tensors.contains(expected.name)) << expected.name;
    const TensorInfo& info = tensors.at(expected.name);
    EXPECT_EQ(info.dtype, expected.dtype) << expected.name;
    EXPECT_EQ(info.shape, expected.shape) << expected.name;
    ASSERT_EQ(info.data.size(), expected.data.size()) << expected.name;
    EXPECT_TRUE(std::equal(info.data.begin(), info.data.end(), expected.data.begin()));
  }
  EXPECT_EQ(tensors.at("zeta.weight").NumElements(), 6);
  EXPECT_EQ(tensors.at("empty").NumElements(), 0);
  EXPECT_EQ(tensors.at("scalar").NumElements(), 1);
  std::vector<float> values(6);
  const TensorInfo& zeta = tensors.at("zeta.weight");
  ConvertToFloat(zeta.data.data(), zeta.dtype, 6, values.data());
  EXPECT_THAT(values, ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST(SafetensorsTest, WriterPadsHeaderAndSortsByName) {
  testing::TempDir dir;
  const auto path = dir.path() / "model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, SampleTensors()).ok());
  const std::string file = testing::ReadFile(path);
  uint64_t length = 0;
  std::memcpy(&length, file.data(), 8);
  EXPECT_EQ(length % 8, 0u);
  const std::string header = file.substr(8, length);
  EXPECT_THAT(header, HasSubstr(R"("__metadata__":{"format":"pt"})"));
  nlohmann::json json = nlohmann::json::parse(header);
  // Data laid out in name order: alpha, empty, mid, scalar, zeta.
  int64_t previous_end = 0;
  for (const char* name : {"alpha.weight", "empty", "mid.bias", "scalar", "zeta.weight"}) {
    EXPECT_EQ(json[name]["data_offsets"][0], previous_end) << name;
    previous_end = json[name]["data_offsets"][1];
  }
  EXPECT_EQ(file.size(), 8 + length + static_cast<uint64_t>(previous_end));
  EXPECT_EQ(json["alpha.weight"]["dtype"], "BF16");
  EXPECT_EQ(json["mid.bias"]["dtype"], "F16");
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  testing::TempDir dir;
  std::vector<TensorToWrite> wrong_size = {{"x", DType::kFloat32, {2}, Bytes("abc")}};
  absl::Status status = WriteSafetensors(dir.path() / "a.safetensors", wrong_size);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("'x' has 3 bytes"));

  std::vector<TensorToWrite> duplicate = {{"x", DType::kFloat32, {1}, Bytes("abcd")},
                                          {"x", DType::kFloat32, {1}, Bytes("abcd")}};
  status = WriteSafetensors(dir.path() / "b.safetensors", duplicate);
  EXPECT_THAT(std::string(status.message()), HasSubstr("'x' given twice"));

  status = WriteSafetensors(dir.path() / "no_such_dir" / "c.safetensors", {});
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("no_such_dir"));
}

TEST(SafetensorsTest, OpenMissingFileIsNotFound) {
  testing::TempDir dir;
  auto file = SafetensorsFile::Open(dir.path() / "absent.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("absent.safetensors"));
}

TEST(SafetensorsTest, OpenEmptyFileOrDirectoryIsAnError) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "empty.safetensors", "");
  auto file = SafetensorsFile::Open(dir.path() / "empty.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("empty file"));
  file = SafetensorsFile::Open(dir.path());
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("not a regular file"));
}

TEST(SafetensorsTest, OpenNamesTheFileOnMalformedHeader) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "bad.safetensors", RawFile("{not json", 0));
  auto file = SafetensorsFile::Open(dir.path() / "bad.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("bad.safetensors"));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("invalid JSON"));
}

struct MalformedCase {
  std::string name;
  std::string file;
  absl::StatusCode code;
  std::string expected;
  friend void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }
};

class SafetensorsMalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(SafetensorsMalformedTest, IsAClearError) {
  absl::Status status = ParseRaw(GetParam().file);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), GetParam().code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("raw.safetensors"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(GetParam().expected));
}

std::string HeaderLength(uint64_t length) {
  std::string file(8, '\0');
  std::memcpy(file.data(), &length, 8);
  return file;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsMalformedTest,
    ::testing::Values(
        MalformedCase{"TooShort", "abc", absl::StatusCode::kInvalidArgument, "too short"},
        MalformedCase{"HeaderPastEnd", HeaderLength(100) + "{}", absl::StatusCode::kInvalidArgument,
                      "runs past the end"},
        MalformedCase{"HeaderTooLarge", HeaderLength(uint64_t{1} << 40) + "{}",
                      absl::StatusCode::kInvalidArgument, "exceeds the limit"},
        MalformedCase{"HeaderLengthMax", HeaderLength(~uint64_t{0}) + "{}",
                      absl::StatusCode::kInvalidArgument, "exceeds the limit"},
        MalformedCase{"InvalidJson", RawFile("{\"a\": ", 0), absl::StatusCode::kInvalidArgument,
                      "invalid JSON"},
        MalformedCase{"NotAnObject", RawFile("[1,2,3] ", 0), absl::StatusCode::kInvalidArgument,
                      "not an object"},
        MalformedCase{"EntryNotObject", RawFile(R"({"t": 5})", 0),
                      absl::StatusCode::kInvalidArgument, "tensor 't': expected an object"},
        MalformedCase{"UnsupportedDtype",
                      RawFile(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8),
                      absl::StatusCode::kUnimplemented, "tensor 't': dtype I64 is not supported"},
        MalformedCase{"UnknownDtype",
                      RawFile(R"({"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1),
                      absl::StatusCode::kInvalidArgument, "unknown dtype 'Q4'"},
        MalformedCase{"MissingDtype", RawFile(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4),
                      absl::StatusCode::kInvalidArgument, "'dtype'"},
        MalformedCase{"NegativeDim",
                      RawFile(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                      absl::StatusCode::kInvalidArgument, "non-negative integer"},
        MalformedCase{"FloatDim",
                      RawFile(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                      absl::StatusCode::kInvalidArgument, "non-negative integer"},
        MalformedCase{"HugeShape",
                      RawFile(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],)"
                              R"("data_offsets":[0,4]}})",
                              4),
                      absl::StatusCode::kInvalidArgument, "too large"},
        MalformedCase{"MissingOffsets", RawFile(R"({"t":{"dtype":"F32","shape":[1]}})", 4),
                      absl::StatusCode::kInvalidArgument, "data_offsets"},
        MalformedCase{"ReversedOffsets",
                      RawFile(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
                      absl::StatusCode::kInvalidArgument, "0 <= begin <= end"},
        MalformedCase{"OffsetsPastBuffer",
                      RawFile(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
                      absl::StatusCode::kInvalidArgument, "run past the end of the 4-byte"},
        MalformedCase{"SizeMismatch",
                      RawFile(R"({"t":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8),
                      absl::StatusCode::kInvalidArgument,
                      "hold 8 bytes but BF16 shape [3] needs 6"},
        MalformedCase{"Overlap",
                      RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              8),
                      absl::StatusCode::kInvalidArgument, "'a' and 'b' overlap"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(SafetensorsTest, MetadataIsSkippedAndZeroSizeTensorsDoNotOverlap) {
  std::string file = RawFile(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      8);
  auto tensors = ParseSafetensors(std::as_bytes(std::span<const char>(file)), "raw");
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ(tensors->size(), 2u);
  EXPECT_FALSE(tensors->contains("__metadata__"));
}

TEST(SafetensorsTest, DeeplyNestedHeaderIsAnErrorNotAStackOverflow) {
  const std::string nested = std::string(100000, '[') + std::string(100000, ']');
  absl::Status status = ParseRaw(
      RawFile(R"({"t":{"dtype":"F32","shape":)" + nested + R"(,"data_offsets":[0,4]}})", 4));
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("shape <array>"));
  EXPECT_FALSE(ParseRaw(RawFile(nested, 0)).ok());
}

// Every truncation of a valid file is an error, never a crash or a read past the end.
TEST(SafetensorsTest, EveryTruncationIsAnError) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.path() / "m.safetensors", SampleTensors()).ok());
  const std::string file = testing::ReadFile(dir.path() / "m.safetensors");
  for (size_t length = 0; length < file.size(); ++length) {
    // Each prefix is copied so that AddressSanitizer sees any read past its end.
    std::vector<char> prefix(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(length));
    auto tensors = ParseSafetensors(std::as_bytes(std::span<const char>(prefix)), "cut");
    EXPECT_FALSE(tensors.ok()) << "prefix of " << length << " bytes parsed";
  }
  // Truncated on disk, through Open as well.
  std::mt19937 random(7);
  for (int i = 0; i < 20; ++i) {
    const size_t length = std::uniform_int_distribution<size_t>(0, file.size() - 1)(random);
    testing::WriteFile(dir.path() / "cut.safetensors", file.substr(0, length));
    EXPECT_FALSE(SafetensorsFile::Open(dir.path() / "cut.safetensors").ok()) << length;
  }
}

// Random byte damage anywhere must give a Status (OK or not), never a crash.
TEST(SafetensorsTest, RandomCorruptionNeverCrashes) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.path() / "m.safetensors", SampleTensors()).ok());
  const std::string file = testing::ReadFile(dir.path() / "m.safetensors");
  std::mt19937 random(11);
  std::uniform_int_distribution<size_t> position(0, file.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int errors = 0;
  for (int i = 0; i < 500; ++i) {
    std::vector<char> damaged(file.begin(), file.end());
    for (int flips = 0; flips < 3; ++flips)
      damaged[position(random)] = static_cast<char>(byte(random));
    auto tensors = ParseSafetensors(std::as_bytes(std::span<const char>(damaged)), "damaged");
    if (!tensors.ok()) {
      ++errors;
      continue;
    }
    for (const auto& [name, info] : *tensors) {
      // Whatever parsed must lie inside the buffer.
      EXPECT_GE(info.data.data(), reinterpret_cast<const std::byte*>(damaged.data()));
      EXPECT_LE(info.data.data() + info.data.size(),
                reinterpret_cast<const std::byte*>(damaged.data() + damaged.size()));
    }
  }
  EXPECT_GT(errors, 0);
}

// Found by the safetensors fuzzer: nlohmann throws out_of_range, not parse_error, for 1e999.
TEST(SafetensorsTest, OutOfRangeNumbersInTheHeaderAreAnError) {
  const absl::Status status =
      ParseRaw(RawFile(R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", 4));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

}  // namespace
}  // namespace muxserve::model
