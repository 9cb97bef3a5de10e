#!/usr/bin/env bash
# `make demo`: perplexity + KL table for the default model (cq-tiny) on WikiText-2 test and the
# C4 hold-out, for every KV format the engine ships, with JSON results in out/demo/.
set -euo pipefail
CQKV=${1:-build/cqkv}
SHARED=${2:-../shared}
OUT=${OUT:-out/demo}
MAX_WINDOWS=${MAX_WINDOWS:-40}
MODEL="$SHARED/models/cq-tiny/model.bin"
TOK="$SHARED/tokenizers/llama2.tokenizer.bin"
if [ ! -f "$MODEL" ]; then
  echo "demo: $MODEL not found; pass the shared folder as SHARED=..." >&2
  exit 1
fi
mkdir -p "$OUT"
echo "cq-tiny, ctx 256, up to $MAX_WINDOWS windows per data set, KL against the fp32 cache" >&2
for data in "$SHARED/data/wikitext-2/wiki.test.raw" "$SHARED/data/c4/c4_validation_1900.jsonl:1800:1900"; do
  name=$(basename "${data%%:*}" | cut -d. -f1)
  for kv in fp32 fp16; do
    "$CQKV" perplexity -m "$MODEL" --tokenizer "$TOK" --data "$data" --ctx 256 --kv "$kv" \
      --kl-base fp32 --max-windows "$MAX_WINDOWS" --json "$OUT/${name}_${kv}.json" | tail -n 1
  done
done | (echo "| model | data | kv | ctx | windows | tokens | ppl | KV bits/channel | KV bytes/token | base ppl | KL (nats) | top-1 agree |"; echo "|---|---|---|---|---|---|---|---|---|---|---|---|"; cat)
echo "JSON results in $OUT/" >&2
