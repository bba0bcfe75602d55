// Encoding speed of our tokenizer on one thread: a corpus of documents (JSON lines, one string
// each) encoded one document at a time, best of --repeat passes, timed by the wall clock and by
// the thread's CPU clock (the figure that holds on a machine other work shares). Prints one JSON
// object with the figures; benchmarks/tokenizer_bench.py runs it next to HF `tokenizers` on the
// same text and writes benchmarks/results/tokenizer.json.
//
//   build/benchmarks/tokenizer_bench --model-dir DIR --corpus FILE.jsonl [--repeat 3]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "muxserve/model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace muxserve {
namespace {

double ThreadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

int Run(const std::filesystem::path& model_dir, const std::filesystem::path& corpus_path,
        int repeat) {
  auto tokenizer = model::Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) {
    std::cerr << "error: " << tokenizer.status().message() << "\n";
    return 1;
  }
  std::ifstream in(corpus_path);
  if (!in) {
    std::cerr << "error: cannot read " << corpus_path << "\n";
    return 1;
  }
  std::vector<std::string> documents;
  int64_t bytes = 0;
  std::string line;
  try {
    while (std::getline(in, line)) {
      documents.push_back(nlohmann::json::parse(line).get<std::string>());
      bytes += static_cast<int64_t>(documents.back().size());
    }
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "error: " << corpus_path << " line " << documents.size() + 1 << ": " << e.what()
              << "\n";
    return 1;
  }
  double best_seconds = 1e30;
  double best_cpu_seconds = 1e30;
  int64_t tokens = 0;
  for (int pass = 0; pass < repeat; ++pass) {
    tokens = 0;
    const double cpu_start = ThreadCpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& document : documents) {
      tokens += static_cast<int64_t>((*tokenizer)->Encode(document, /*add_bos=*/false).size());
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    best_seconds = std::min(best_seconds, elapsed.count());
    best_cpu_seconds = std::min(best_cpu_seconds, ThreadCpuSeconds() - cpu_start);
  }
  // FNV-1a over every id, outside the timing, so the caller can check the ids against HF's.
  uint64_t ids_hash = 14695981039346656037ull;
  for (const std::string& document : documents) {
    for (int32_t id : (*tokenizer)->Encode(document, /*add_bos=*/false)) {
      ids_hash = (ids_hash ^ static_cast<uint32_t>(id)) * 1099511628211ull;
    }
  }
  nlohmann::json result = {
      {"documents", documents.size()},
      {"bytes", bytes},
      {"tokens", tokens},
      {"ids_fnv1a", ids_hash},
      {"seconds", best_seconds},
      {"mb_per_second", static_cast<double>(bytes) / 1e6 / best_seconds},
      {"cpu_seconds", best_cpu_seconds},
      {"mb_per_cpu_second", static_cast<double>(bytes) / 1e6 / best_cpu_seconds},
      {"passes", repeat}};
  std::cout << result.dump() << "\n";
  return 0;
}

}  // namespace
}  // namespace muxserve

int main(int argc, char** argv) {
  CLI::App app{"Encoding speed of the muxserve tokenizer on one thread"};
  std::filesystem::path model_dir;
  std::filesystem::path corpus;
  int repeat = 3;
  app.add_option("--model-dir", model_dir, "Directory with tokenizer.json")->required();
  app.add_option("--corpus", corpus, "JSON lines, one document string each")->required();
  app.add_option("--repeat", repeat, "Passes; the fastest counts")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  return muxserve::Run(model_dir, corpus, repeat);
}
