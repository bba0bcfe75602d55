#!/usr/bin/env bash
# Sets up, builds and starts muxserved on configs/default.yaml (tiny synthetic models, written on
# the first run; CPU backend without a GPU). Extra arguments go to muxserved.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build_dir=${MUXSERVE_BUILD_DIR:-build}
exec "$build_dir/src/apps/muxserved" --config "${MUXSERVE_CONFIG:-configs/default.yaml}" "$@"
