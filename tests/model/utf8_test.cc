#include "utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace muxserve::model {
namespace {

std::string Lossy(std::string_view bytes) {
  std::string out;
  EXPECT_EQ(AppendLossyUtf8(bytes, /*final=*/true, &out), bytes.size());
  return out;
}

constexpr std::string_view kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidTextIsUnchanged) {
  for (std::string_view text : {"", "ascii", "Grüße", "中文", "🦀 \U0010FFFF", "\x7F"}) {
    EXPECT_EQ(Lossy(text), text);
  }
}

// The replacements of Rust's String::from_utf8_lossy (Unicode's maximal subparts).
TEST(Utf8Test, IllFormedSubpartsBecomeOneReplacementEach) {
  EXPECT_EQ(Lossy("\x80"), kFffd);
  EXPECT_EQ(Lossy("a\xC3"), std::string("a") + std::string(kFffd));
  EXPECT_EQ(Lossy("\xF0\x9F\x98"), kFffd);  // truncated 4-byte char
  EXPECT_EQ(Lossy("\xE0\x80\x80"), std::string(kFffd) + std::string(kFffd) + std::string(kFffd));
  EXPECT_EQ(Lossy("\xED\xA0\x80"), std::string(kFffd) + std::string(kFffd) + std::string(kFffd));
  EXPECT_EQ(Lossy("\xC0\xAF"), std::string(kFffd) + std::string(kFffd));  // overlong
  EXPECT_EQ(Lossy("\xF4\x90\x80\x80"),
            std::string(kFffd) + std::string(kFffd) + std::string(kFffd) + std::string(kFffd));
  EXPECT_EQ(Lossy("\xE2\x82x"), std::string(kFffd) + "x");
}

TEST(Utf8Test, IncompleteTailIsHeldUnlessFinal) {
  std::string out;
  EXPECT_EQ(AppendLossyUtf8("ab\xE2\x82", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(AppendLossyUtf8("\xE2\x82\xAC", /*final=*/false, &out), 3u);
  EXPECT_EQ(out, "\xE2\x82\xAC");
}

TEST(Utf8Test, CharLengthAndCodePoints) {
  EXPECT_EQ(Utf8CharLength("a"), 1u);
  EXPECT_EQ(Utf8CharLength("é"), 2u);
  EXPECT_EQ(Utf8CharLength("中"), 3u);
  EXPECT_EQ(Utf8CharLength("🦀"), 4u);
  EXPECT_EQ(Utf8CharLength("\xF0\x9F"), 1u);
  EXPECT_EQ(Utf8CharLength("\xFF"), 1u);
  for (uint32_t code_point : {0x24u, 0xA2u, 0x20ACu, 0x10348u, 0x10FFFFu}) {
    std::string text;
    AppendCodePoint(code_point, &text);
    EXPECT_EQ(NextUtf8(text).kind, Utf8Step::kValid);
    EXPECT_EQ(NextUtf8(text).length, text.size());
    EXPECT_EQ(DecodeCodePoint(text), code_point);
  }
}

}  // namespace
}  // namespace muxserve::model
