// The muxserve CLI's `profile` command: measures the config's models on this machine's GPU (or
// CPU) and writes the cost table `muxserve plan` and the daemon read (docs/planner.md).
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Adds `profile`; when it runs it stores its exit status in `*exit_code`.
void AddProfileCommand(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
