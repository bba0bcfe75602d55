// The muxserve CLI's `plan` command: the placement the daemon would start with, as a table and
// as JSON, from a YAML config alone (no daemon, no GPU, no weights read).
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Adds `plan`; when it runs it stores its exit status in `*exit_code`.
void AddPlanCommand(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
