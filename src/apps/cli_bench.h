// The muxserve CLI's measurement commands: bench (open-loop load against a running muxserved),
// trace (generate-chatlmsys, compress, stats) and experiment (every scheduling mode on one
// config, the same requests against each). docs/loadgen.md describes every flag.
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Adds bench, trace and experiment to `app`. The one that runs stores its exit status in
// `*exit_code`: 0, or 1 on any error.
void AddBenchCommands(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
