#!/usr/bin/env bash
# Installs the Debian packages cqkv needs. Idempotent: a no-op when everything is present.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config   # compiler and build
  libhwy-dev                          # Highway: portable SIMD with runtime dispatch
  libpcre2-dev                        # PCRE2: Unicode-class regex for the GPT-2 pre-tokenizer
  libopenblas-dev                     # BLAS sgemm for batched prefill
  nlohmann-json3-dev                  # JSON results and config files
  libcli11-dev                        # command-line parsing with --help
  libfmt-dev                          # formatting of messages and tables
  libcpp-httplib-dev                  # HTTP server of `cqkv serve` (OpenAI-compatible API)
  libgtest-dev libgmock-dev           # unit tests
  libbenchmark-dev                    # benchmarks
  python3-numpy                       # independent reference forward pass (tests only)
  python3-matplotlib                  # plots in reports
  clang-format
  clang libclang-rt-14-dev            # sanitizer build and libFuzzer targets (make test-asan, fuzz)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "setup: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
