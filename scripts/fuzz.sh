#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, coverage in every library) in build-fuzz/
# and runs each one, starting from the committed seeds in tests/fuzz/corpus/<target>/.
#   scripts/fuzz.sh                 every target for 30 s
#   scripts/fuzz.sh -t 300          every target for 300 s
#   scripts/fuzz.sh -r 1000000      every target for 10^6 executions
#   scripts/fuzz.sh config_fuzzer   one target
#   scripts/fuzz.sh -s              smoke test (CI): every target for 30 s from its seeds alone,
#                                   in a fresh corpus, so a run does not depend on earlier ones
# A crash, leak or sanitizer report stops the run with the reproducer in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
runs=""
smoke=0
while getopts "t:r:s" flag; do
  case $flag in
    t) seconds=$OPTARG ;;
    r) runs=$OPTARG ;;
    s) smoke=1 ;;
    *) echo "usage: $0 [-s] [-t seconds | -r runs] [target...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(config_fuzzer safetensors_fuzzer tokenizer_json_fuzzer tokenizer_encode_fuzzer
           chat_template_fuzzer request_fuzzer)
fi

# clang 16: Debian's clang 14 has no _Float16 on x86-64 (common/dtype.cc uses it).
packages=(clang-16 libclang-rt-16-dev libomp-16-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

build=${MUXSERVE_FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 -DMUXSERVE_CUDA=OFF \
    -DMUXSERVE_FUZZ=ON -DMUXSERVE_SANITIZE=ON -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C "$build" "${targets[@]}"

mkdir -p "$build/artifacts"
corpus_root="$build/corpus"
if ((smoke)); then
  corpus_root=$(mktemp -d "${TMPDIR:-/tmp}/muxserve-fuzz-smoke.XXXXXX")
  trap 'rm -rf "$corpus_root"' EXIT
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for target in "${targets[@]}"; do
  corpus="$corpus_root/$target"
  seeds="tests/fuzz/corpus/$target"
  mkdir -p "$corpus"
  limit=(-max_total_time="$seconds")
  [ -n "$runs" ] && limit=(-runs="$runs")
  echo "fuzz: $target ${limit[*]}"
  dirs=("$corpus")
  [ -d "$seeds" ] && dirs+=("$seeds")
  log="$build/artifacts/$target.log"
  if ! "$build/tests/fuzz/$target" "${limit[@]}" -max_len=65536 -timeout=25 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" "${dirs[@]}" >"$log" 2>&1
  then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (reproducer and log in $build/artifacts/)"
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$log" || true
done
