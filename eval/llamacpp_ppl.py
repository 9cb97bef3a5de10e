#!/usr/bin/env python3
"""cqkv's perplexity with llama.cpp's protocol against llama.cpp's own figures (shared/README.md).

Runs `cqkv perplexity --protocol llama.cpp --ctx 128 --chunks 100` on WikiText-2 test for cq-tiny as F32
(model.bin + llama2.tokenizer.bin) and as llama.cpp's Q4_K_M / Q2_K GGUFs, with an fp32 and an fp16 KV
cache, and prints each result beside llama.cpp's figure (`llama-perplexity -c 128 --chunks 100 -b 128`)
with the relative difference. The issue's bar is 2e-3 relative: llama.cpp quantises activations to
8 bits for K-quant rows, rounds F16 rows' activations to fp16 and keeps an fp16 KV cache.

  python3 eval/llamacpp_ppl.py --cqkv build/cqkv --shared ../shared [--chunks 100] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

LLAMA_CPP = {"F32": 1164.3524, "Q4_K_M": 1176.3208, "Q2_K": 1214.9022}  # shared/README.md, 100 chunks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cqkv", default="build/cqkv")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv", default="fp32,fp16")
    a = ap.parse_args()
    tiny = os.path.join(a.shared, "models", "cq-tiny")
    models = {
        "F32": ["-m", os.path.join(tiny, "model.bin"),
                "--tokenizer", os.path.join(a.shared, "tokenizers", "llama2.tokenizer.bin")],
        "Q4_K_M": ["-m", os.path.join(tiny, "cq-tiny.Q4_K_M.gguf")],
        "Q2_K": ["-m", os.path.join(tiny, "cq-tiny.Q2_K.gguf")],
    }
    wiki = os.path.join(a.shared, "data", "wikitext-2", "wiki.test.raw")
    print(f"| model | kv | chunks | scored tokens | cqkv ppl | llama.cpp ppl | rel. diff | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for name, margs in models.items():
        for kv in a.kv.split(","):
            with tempfile.NamedTemporaryFile(suffix=".json") as js:
                cmd = [a.cqkv, "perplexity", *margs, "-f", wiki, "--protocol", "llama.cpp", "--ctx", "128",
                       "--chunks", str(a.chunks), "-b", "128", "--kv", kv, "-t", str(a.threads), "-q",
                       "--json", js.name]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                r = json.load(open(js.name))
            ref = LLAMA_CPP[name] if a.chunks == 100 else None
            rel = (r["ppl"] - ref) / ref if ref else float("nan")
            if ref:
                worst = max(worst, abs(rel))
            print(f"| {name} | {kv} | {r['windows']} | {r['tokens']} | {r['ppl']:.4f} | "
                  f"{ref if ref else '-'} | {rel:+.2e} | {r['seconds']:.1f} |", flush=True)
    if a.chunks == 100:
        print(f"worst |rel. diff| = {worst:.2e} (bar: 2e-3)")
        return 0 if worst <= 2e-3 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
