#!/usr/bin/env python3
"""Plots reports/serving/*.json (cqkv bench-serve): sequences admitted and aggregate decode
tokens/s against the KV budget, one line per format, one column per (model, context)."""
import collections
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(folder):
    cases = collections.defaultdict(list)  # (model, ctx) -> [(budget, result)]
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        if "batch8" in os.path.basename(path):
            continue  # fixed-batch cases (--max-seqs 8), not budget sweeps
        with open(path) as f:
            doc = json.load(f)
        if "results" not in doc:
            continue
        model = os.path.basename(doc["model"].rstrip("/"))
        if model == "model.bin":
            model = os.path.basename(os.path.dirname(doc["model"]))
        for r in doc["results"]:
            cases[(model, doc["ctx"])].append((r["kv_memory_bytes"] / 2**20, r))
    if not cases:
        sys.exit("plot_serving: no bench-serve JSON in " + folder)
    keys = sorted(cases)
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 7), squeeze=False)
    for col, key in enumerate(keys):
        by_format = collections.defaultdict(list)
        for budget, r in cases[key]:
            by_format[r["format"]].append((budget, r))
        for fmt, points in by_format.items():
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            axes[0][col].plot(xs, [p[1]["sequences"] for p in points], "o-", label=fmt)
            axes[1][col].plot(xs, [p[1]["decode_tok_s"] for p in points], "o-", label=fmt)
        for row, label in ((0, "sequences admitted"), (1, "decode tokens/s (all sequences)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_xlabel("KV budget (MiB)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][col].set_title(f"{key[0]}, ctx {key[1]}")
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(folder, "serving.png")
    fig.savefig(out, dpi=110)
    print("plot_serving: wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/serving")
