#!/usr/bin/env bash
# Sets up, builds and runs every test (GPU tests skip cleanly without a device).
# MUXSERVE_SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${MUXSERVE_SANITIZE:-0}" = 1 ]; then
  export MUXSERVE_BUILD_DIR=${MUXSERVE_BUILD_DIR:-build-asan}
  scripts/build.sh -DMUXSERVE_SANITIZE=ON -DMUXSERVE_WERROR=ON
else
  export MUXSERVE_BUILD_DIR=${MUXSERVE_BUILD_DIR:-build}
  scripts/build.sh -DMUXSERVE_WERROR=ON
fi
ctest --test-dir "$MUXSERVE_BUILD_DIR" --output-on-failure --timeout 300 -j2
