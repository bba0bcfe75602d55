// muxserve: the operator's CLI. Client commands talk to a running muxserved over gRPC
// (generate, chat, models, stats, abort); local ones need no daemon (make-model, check-config,
// plan, profile).
#include "CLI/CLI.hpp"
#include "cli_bench.h"
#include "cli_local.h"
#include "cli_plan.h"
#include "cli_profile.h"
#include "cli_rpc.h"
#include "cli_tokenize.h"

int main(int argc, char** argv) {
  CLI::App app{"muxserve: client and tools for the muxserved LLM server"};
  app.require_subcommand(1);
  int exit_code = 0;
  muxserve::cli::AddRpcCommands(app, &exit_code);
  muxserve::cli::AddLocalCommands(app, &exit_code);
  muxserve::cli::AddTokenizeCommands(app, &exit_code);
  muxserve::cli::AddBenchCommands(app, &exit_code);
  muxserve::cli::AddPlanCommand(app, &exit_code);
  muxserve::cli::AddProfileCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  return exit_code;
}
