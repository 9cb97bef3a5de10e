#!/usr/bin/env bash
# Installs cqkv from the build tree into a scratch prefix, builds examples/embed against it with
# find_package(cqkv) (public headers only) and runs it on stories260K.
set -euo pipefail
build=$1 src=$2 shared=$3
model=$shared/models/stories260K/model.bin
work=$build/install-test
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/examples/embed" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j 2 >/dev/null
if [[ ! -f $model ]]; then
  echo "built; skipped the run: $model absent"
  exit 0
fi
out=$("$work/build/embed" "$model" fp16)
echo "$out"
grep -q "^\[1\] Once upon a time" <<<"$out"
grep -q "^\[2\] The little dog" <<<"$out"
grep -q "KV pages in use after: 0" <<<"$out"
