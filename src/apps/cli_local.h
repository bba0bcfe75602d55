// The muxserve CLI's local commands, which need no daemon: make-model and check-config.
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Exit status of check-config when the file is invalid (flag errors keep CLI11's codes).
inline constexpr int kInvalidConfigExitCode = 2;

// Adds the local subcommands to `app`; the one that runs stores its exit status in `*exit_code`.
void AddLocalCommands(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
