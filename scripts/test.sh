#!/usr/bin/env bash
# Sets up, builds and runs every test, stage by stage (GPU tests skip cleanly without a device):
#   unit  the normal build in build/ (or $MUXSERVE_BUILD_DIR) and all its tests
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/ (CUDA off: CPU
#         tests only) and its tests
#   fuzz  the libFuzzer targets (scripts/fuzz.sh -s): each runs 30 s from its seed corpus
# MUXSERVE_TEST_STAGES picks and orders them (default "unit asan fuzz"); e.g.
# MUXSERVE_TEST_STAGES=unit scripts/test.sh. MUXSERVE_SANITIZE=1 alone means the asan stage.
set -euo pipefail
cd "$(dirname "$0")/.."

default_stages="unit asan fuzz"
[ "${MUXSERVE_SANITIZE:-0}" = 1 ] && default_stages=asan
read -r -a stages <<<"${MUXSERVE_TEST_STAGES:-$default_stages}"
for stage in "${stages[@]}"; do
  case $stage in
    unit | asan | fuzz) ;;
    *) echo "test.sh: unknown stage '$stage' (stages: unit asan fuzz)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh

# A test that fails is run once more: a few end-to-end tests with real daemons and clocks are
# timing-sensitive on a loaded 2-core machine; a test failing twice fails the run.
run_tests() {
  ctest --test-dir "$1" --output-on-failure --timeout 300 -j2 --repeat until-pass:2 "${@:2}"
}

for stage in "${stages[@]}"; do
  echo "test.sh: stage $stage"
  started=$SECONDS
  case $stage in
    unit)
      build=${MUXSERVE_BUILD_DIR:-build}
      MUXSERVE_BUILD_DIR=$build scripts/build.sh -DMUXSERVE_WERROR=ON
      run_tests "$build"
      ;;
    asan)
      build=${MUXSERVE_ASAN_BUILD_DIR:-build-asan}
      MUXSERVE_BUILD_DIR=$build scripts/build.sh -DMUXSERVE_SANITIZE=ON -DMUXSERVE_WERROR=ON \
        -DMUXSERVE_CUDA=OFF
      # Daemons the tests start inherit these: a report fails the test that started them.
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        run_tests "$build" -LE gpu
      ;;
    fuzz)
      scripts/fuzz.sh -s
      ;;
  esac
  echo "test.sh: stage $stage passed in $((SECONDS - started)) s"
done
