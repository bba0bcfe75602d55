// The muxserve CLI's tokenizer commands for operators: tokenize (text -> ids) and detokenize
// (ids -> text), with a model directory's own tokenizer.json and configs.
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Adds `tokenize` and `detokenize` to `app`; the one that runs stores its exit status in
// `*exit_code`.
void AddTokenizeCommands(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
