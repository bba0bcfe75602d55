// Every fixture tokenizer against HF `tokenizers` on the 2,400 strings of parity.jsonl
// (make_parity.py): ids, decoded text with and without special tokens, and streamed text.
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/model/tokenizer.h"
#include "nfc.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::model {
namespace {

struct ParityCase {
  std::string text;
  nlohmann::json line;
};

const std::vector<ParityCase>& Cases() {
  static const std::vector<ParityCase> cases = [] {
    std::vector<ParityCase> result;
    std::ifstream in(testing::TestDataDir() / "parity.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json parsed = nlohmann::json::parse(line);
      result.push_back({parsed["text"].get<std::string>(), std::move(parsed)});
    }
    return result;
  }();
  return cases;
}

// The field of `line` for this fixture, or `fallback` when the line leaves it out.
std::string TextOr(const nlohmann::json& line, const char* key, const std::string& fixture,
                   const std::string& fallback) {
  auto field = line.find(key);
  if (field == line.end() || !field->contains(fixture)) return fallback;
  return (*field)[fixture].get<std::string>();
}

class TokenizerParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParityTest, IdsAndTextMatchHuggingFace) {
  const std::string& fixture = GetParam();
  auto tokenizer = Tokenizer::Load(testing::TestDataDir() / fixture);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_GE(Cases().size(), 2000u);
  int mismatches = 0;
  for (const ParityCase& parity : Cases()) {
    const auto expected = parity.line["ids"][fixture].get<std::vector<int32_t>>();
    const std::string decoded = TextOr(parity.line, "decoded", fixture, parity.text);
    const std::string decoded_skip = TextOr(parity.line, "decoded_skip", fixture, decoded);
    const std::vector<int32_t> ids = (*tokenizer)->Encode(parity.text, /*add_bos=*/false);
    std::string streamed;
    StreamDecoder stream(tokenizer->get(), /*skip_special=*/false);
    for (int32_t id : expected) streamed += stream.Push(id);
    streamed += stream.Flush();
    const bool same = ids == expected && (*tokenizer)->Decode(expected, false) == decoded &&
                      (*tokenizer)->Decode(expected, true) == decoded_skip && streamed == decoded;
    // The first few differences in full; then only the count, so a regression stays readable.
    if (!same && ++mismatches <= 5) {
      ADD_FAILURE() << fixture << ": text " << nlohmann::json(parity.text).dump() << "\n  ids  "
                    << nlohmann::json(ids).dump() << "\n  want " << nlohmann::json(expected).dump()
                    << "\n  decoded "
                    << nlohmann::json((*tokenizer)->Decode(expected, false)).dump() << " want "
                    << nlohmann::json(decoded).dump();
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << Cases().size() << " strings";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerParityTest,
                         ::testing::Values("byte_level", "qwen2", "gpt2", "llama2", "metaspace"));

// Encode keeps per-thread word caches: threads sharing one tokenizer, and two tokenizers
// alternating on one thread, give what HF gives.
TEST(TokenizerParityTest, ThreadsAndAlternatingTokenizersAgree) {
  auto first = Tokenizer::Load(testing::TestDataDir() / "byte_level");
  auto second = Tokenizer::Load(testing::TestDataDir() / "gpt2");
  ASSERT_TRUE(first.ok() && second.ok());
  std::atomic<int> mismatches = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < Cases().size(); i += 2) {
        const ParityCase& parity = Cases()[i];
        for (const auto& [name, tokenizer] :
             {std::pair{"byte_level", first->get()}, std::pair{"gpt2", second->get()}}) {
          if (tokenizer->Encode(parity.text, false) !=
              parity.line["ids"][name].get<std::vector<int32_t>>()) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, 0);
}

// NFC (Qwen2's normalizer) against Python's unicodedata: composed marks, reordered mark runs,
// Hangul jamo, singletons; text already in NFC comes back unchanged.
TEST(NfcTest, MatchesPythonUnicodedata) {
  int changed = 0;
  for (const ParityCase& parity : Cases()) {
    auto nfc = parity.line.find("nfc");
    const std::string want = nfc != parity.line.end() ? nfc->get<std::string>() : parity.text;
    EXPECT_EQ(ToNfc(parity.text), want) << nlohmann::json(parity.text).dump();
    changed += nfc != parity.line.end();
  }
  EXPECT_GT(changed, 200);
  EXPECT_EQ(ToNfc("\u1100\u1161\u11A8"), "\uAC01");            // L V T -> one syllable
  EXPECT_EQ(ToNfc("a\u0323\u0302"), "\u1EAD");                 // two marks, both composed
  EXPECT_EQ(ToNfc("a\u0302\u0323"), "\u1EAD");                 // same, after reordering
  EXPECT_EQ(ToNfc("\u212B"), "\u00C5");                        // Angstrom sign: a singleton
  EXPECT_EQ(ToNfc("e\xCC e\xFF\u0301"), "e\xCC e\xFF\u0301");  // ill-formed bytes stay
}

}  // namespace
}  // namespace muxserve::model
