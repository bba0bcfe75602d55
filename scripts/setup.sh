#!/usr/bin/env bash
# Installs the Debian packages muxserve builds and tests with. Idempotent; quiet when all present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev
  libre2-dev libcli11-dev libopenblas-dev libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3-matplotlib
  openssl  # certificates for the TLS integration tests
  # The fuzz stage of scripts/test.sh (scripts/fuzz.sh): clang 16, its libFuzzer and sanitizer
  # runtimes, and its OpenMP.
  clang-16 libclang-rt-16-dev libomp-16-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
# The CUDA toolkit is optional: with nvcc at /usr/local/cuda the CUDA code is compiled too.
