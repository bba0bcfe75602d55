#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/config/config.h"

namespace muxserve::config {
namespace {

using ::testing::HasSubstr;

TEST(ParseByteSize, PlainBytes) {
  EXPECT_EQ(ParseByteSize("0").value(), 0);
  EXPECT_EQ(ParseByteSize("268435456").value(), 268435456);
  EXPECT_EQ(ParseByteSize(" 4096 ").value(), 4096);
  EXPECT_EQ(ParseByteSize("100B").value(), 100);
}

TEST(ParseByteSize, BinaryUnits) {
  EXPECT_EQ(ParseByteSize("16KiB").value(), 16384);
  EXPECT_EQ(ParseByteSize("256MiB").value(), int64_t{256} << 20);
  EXPECT_EQ(ParseByteSize("2GiB").value(), int64_t{2} << 30);
  EXPECT_EQ(ParseByteSize("1TiB").value(), int64_t{1} << 40);
  EXPECT_EQ(ParseByteSize("1.5 GiB").value(), int64_t{3} << 29);
  EXPECT_EQ(ParseByteSize("64mib").value(), int64_t{64} << 20);
}

TEST(ParseByteSize, DecimalUnits) {
  EXPECT_EQ(ParseByteSize("512MB").value(), 512'000'000);
  EXPECT_EQ(ParseByteSize("3kb").value(), 3000);
  EXPECT_EQ(ParseByteSize("2 GB").value(), 2'000'000'000);
  EXPECT_EQ(ParseByteSize("0.5TB").value(), 500'000'000'000);
}

TEST(ParseByteSize, Rejects) {
  for (const std::string bad : {"", "MiB", "abc", "12 bananas", "1.2.3MiB", "-5", "5 Mi B"}) {
    absl::StatusOr<int64_t> size = ParseByteSize(bad);
    EXPECT_FALSE(size.ok()) << bad;
    EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParseByteSize("-5").status().ToString(), HasSubstr("cannot be negative"));
  EXPECT_THAT(ParseByteSize("3 XB").status().ToString(), HasSubstr("unknown unit 'xb'"));
}

TEST(ParseByteSize, RejectsOverflow) {
  EXPECT_THAT(ParseByteSize("9223372036854775808").status().ToString(), HasSubstr("too large"));
  EXPECT_THAT(ParseByteSize("9000000TiB").status().ToString(), HasSubstr("too large"));
  EXPECT_THAT(ParseByteSize("9000000.5TiB").status().ToString(), HasSubstr("too large"));
}

}  // namespace
}  // namespace muxserve::config
