#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/common/clock.h"
#include "muxserve/common/dtype.h"
#include "muxserve/common/logging.h"
#include "muxserve/common/status.h"

namespace muxserve {
namespace {

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(*ParseDType("bf16"), DType::kBFloat16);
  EXPECT_EQ(*ParseDType("Float16"), DType::kFloat16);
  EXPECT_EQ(*ParseDType("float32"), DType::kFloat32);
  EXPECT_EQ(ParseDType("int8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeName(DType::kFloat16), "float16");
}

TEST(DTypeTest, RoundTripsAndRounding) {
  const std::vector<float> values = {0.0f, 1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f, -1e-8f};
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    std::vector<uint16_t> half(values.size());
    std::vector<float> back(values.size());
    ConvertFromFloat(values.data(), values.size(), dtype, half.data());
    ConvertToFloat(half.data(), dtype, values.size(), back.data());
    const double tolerance = dtype == DType::kBFloat16 ? 1.0 / 128 : 1.0 / 1024;
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_LE(std::fabs(back[i] - values[i]), tolerance * std::fabs(values[i]) + 1e-7)
          << DTypeName(dtype) << " " << values[i];
    }
  }
  // bf16 rounds to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
  EXPECT_EQ(FloatToBf16(1.0f + 1.0f / 256), FloatToBf16(1.0f));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status Quarter(int x, int* out) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(*out, Half(half));
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagateAndAnnotate) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status annotated = Annotate(absl::NotFoundError("gone"), "loading x");
  EXPECT_EQ(annotated.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(annotated.message(), "loading x: gone");
}

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock clock;
  const SteadyTime start = clock.Now();
  clock.Advance(std::chrono::milliseconds(1500));
  EXPECT_DOUBLE_EQ(SecondsBetween(start, clock.Now()), 1.5);
}

TEST(LoggingTest, RejectsUnknownLevels) {
  EXPECT_TRUE(SetLogLevel("warn").ok());
  EXPECT_EQ(SetLogLevel("loud").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(SetLogLevel("info").ok());
}

}  // namespace
}  // namespace muxserve
