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
# A test that fails is run once more: a few end-to-end tests with real daemons and clocks are
# timing-sensitive on a loaded 2-core machine; a test failing twice fails the run.
ctest --test-dir "$MUXSERVE_BUILD_DIR" --output-on-failure --timeout 300 -j2 --repeat until-pass:2
