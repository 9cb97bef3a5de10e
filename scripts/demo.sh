#!/usr/bin/env bash
# `make demo`: the main job on the default model (cq-tiny). Learns Fisher-weighted CQ codebooks
# (pre-RoPE keys) on C4 documents that are not evaluation text, then prints the perplexity + KL
# table of fp16, integer and CQ KV caches against the fp32 cache on WikiText-2 test and the C4
# hold-out. JSON results and codebooks go to out/demo/.
set -euo pipefail
CQKV=${1:-build/cqkv}
SHARED=${2:-../shared}
OUT=${OUT:-out/demo}
MAX_WINDOWS=${MAX_WINDOWS:-24}
MODEL="$SHARED/models/cq-tiny/model.bin"
TOK="$SHARED/tokenizers/llama2.tokenizer.bin"
if [ ! -f "$MODEL" ]; then
  echo "demo: $MODEL not found; pass the shared folder as SHARED=..." >&2
  exit 1
fi
mkdir -p "$OUT"
for cfg in 4c8b 8c8b; do
  if [ ! -f "$OUT/cq-tiny-$cfg.cqcb" ]; then
    echo "demo: calibrating CQ-$cfg (Fisher, pre-RoPE keys, 16 x 256 tokens of C4 docs 0..399)" >&2
    "$CQKV" calibrate -m "$MODEL" --tokenizer "$TOK" --fisher --keys pre-rope --config "$cfg" \
      --data "$SHARED/data/c4/c4_validation_1900.jsonl:0:400" --tokens 16x256 \
      -o "$OUT/cq-tiny-$cfg.cqcb" > /dev/null
  fi
done
echo "demo: cq-tiny, ctx 256, $MAX_WINDOWS windows per data set, KL against the fp32 cache" >&2
rows=()
for data in "$SHARED/data/wikitext-2/wiki.test.raw" "$SHARED/data/c4/c4_validation_1900.jsonl:1800:1900"; do
  name=$(basename "${data%%:*}" | cut -d. -f1)
  for kv in fp16 int4-token int2-token "cq:$OUT/cq-tiny-4c8b.cqcb" int1-token "cq:$OUT/cq-tiny-8c8b.cqcb"; do
    tag=$(basename "${kv#cq:}" .cqcb)
    echo "demo: $name, --kv $kv" >&2
    rows+=("$("$CQKV" perplexity -m "$MODEL" --tokenizer "$TOK" --data "$data" --ctx 256 \
      --kv "$kv" --kl-base fp32 --max-windows "$MAX_WINDOWS" --json "$OUT/${name}_${tag}.json" \
      2> >(grep -v '^model:\|^data:' >&2) | tail -n 1)")
  done
done
# The table at the end, in one piece (progress went to stderr above).
echo "| model | data | kv | ctx | windows | tokens | ppl | KV bits/channel | KV bytes/token | base ppl | KL (nats) | top-1 agree |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "demo: JSON results in $OUT/ (bits/channel: 4c8b = 2, 8c8b = 1; see reports/cq_study)" >&2
