// The muxserve CLI's gRPC client commands: generate, chat, models, stats, abort.
#pragma once

#include "CLI/CLI.hpp"

namespace muxserve::cli {

// Adds the client subcommands to `app`. The one that runs stores its exit status in
// `*exit_code`: 0, or 1 when the server answered with an error.
void AddRpcCommands(CLI::App& app, int* exit_code);

}  // namespace muxserve::cli
