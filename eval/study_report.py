"""The CQ study's report: Markdown tables (perplexity/KL per model and data set, zero-shot accuracy)
and one bits-vs-quality plot with every family (KL and perplexity change against bits per channel).
"""
import math
import os

import study_variants as sv


def _bits(r):
    return r["kv_bits_per_channel"]


def _ppl_table(rows):
    base = next((r["ppl"] for r in rows if r["format"] == "fp32"), None)
    out = ["| format | family | bits/channel | bytes/token (amortised) | ppl | ppl vs fp32 | "
           "KL (nats) | top-1 agree | -b |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (-_bits(r), r["kld"])):
        delta = f"{100 * (r['ppl'] / base - 1):+.2f}%" if base else ""
        out.append(f"| {r['format']} | {r['family']} | {_bits(r):.3g} | "
                   f"{r['kv_bytes_per_token']:.0f} | {r['ppl']:.3f} | {delta} | {r['kld']:.4g} | "
                   f"{r['top1_agree']:.3f} | {r.get('batch', 512)} |")
    return out


def mean_acc(r):
    """(mean acc over tasks, its standard error from the per-task binomial errors)."""
    accs = [x["acc"] for x in r["results"]]
    ses = [x.get("acc_stderr", 0.0) for x in r["results"]]
    return sum(accs) / len(accs), math.sqrt(sum(s * s for s in ses)) / len(ses)


def _zeroshot_table(rows):
    tasks = [x["task"] for x in rows[0]["results"]]
    base = next((mean_acc(r)[0] for r in rows if r["format"] == "fp32"), None)
    out = ["| format | family | bits/channel | " + " | ".join(tasks) +
           " | mean acc | ± stderr | vs fp32 (points) |",
           "|---|---|---|" + "---|" * len(tasks) + "---|---|---|"]
    for r in sorted(rows, key=lambda r: -_bits(r)):
        acc = {x["task"]: x["acc"] for x in r["results"]}
        m, se = mean_acc(r)
        delta = f"{100 * (m - base):+.1f}" if base is not None else ""
        out.append(f"| {r['format']} | {r['family']} | {_bits(r):.3g} | " +
                   " | ".join(f"{100 * acc[t]:.1f}" for t in tasks) +
                   f" | {100 * m:.2f} | {100 * se:.2f} | {delta} |")
    return out


def write(results, zeroshot, args):
    variants = [r for r in results if sv.is_variant(r)]
    results = [r for r in results if not sv.is_variant(r)]
    lines = ["# CQ study: KV-cache formats at equal bits per channel", "",
             f"`python3 eval/study.py --max-windows {args.max_windows} --recipe-tokens "
             f"{args.recipe_tokens} --limit {args.limit} --zeroshot-windows`; ctx 256, KL and top-1 agreement against "
             "the fp32 cache on the same windows. Bits/channel counts per-token storage (codes, "
             "scales, zero points), not tables shared by all sequences (CQ codebooks) nor "
             "full-precision windows (KIVI's and CQ `:r32`'s 32 most recent tokens), which "
             "`bytes/token` amortises over the 256-token context. `-b 1`: decode mode, used for "
             "windowed formats until the prefill path gives every query its own window.", ""]
    for model_name in sorted({r["model_name"] for r in results}):
        for data_name in sorted({r["data_name"] for r in results}):
            rows = [r for r in results if r["model_name"] == model_name and r["data_name"] == data_name]
            if rows:
                lines += [f"## {model_name}, {data_name} ({rows[0]['windows']} windows, "
                          f"{rows[0]['tokens']} predicted tokens)", ""] + _ppl_table(rows) + [""]
    for model_name, data_name in sorted({(r["model_name"], r["data_name"]) for r in variants}):
        rows = [r for r in variants
                if r["model_name"] == model_name and r["data_name"] == data_name]
        lines += [f"## Attention variants (issue 14): {model_name}, {data_name} "
                  f"({rows[0]['windows']} windows)", "",
                  "`-b 1`: decode mode, one token per step, so the decode kernel computes every "
                  "score and value sum (prefill reads dequantised rows); used wherever the kernel "
                  "approximates (fast-scan scores) or is the row's point (rope-comm keys, and the "
                  "exact post-RoPE rows the fast-scan ones pair with). "
                  "*vs exact* and *KL / exact*: against the recipe's exact "
                  "k-means codebook (Fisher, pre-RoPE, "
                  f"{args.recipe_tokens} tokens) of the same bits and fp16 window; *same file "
                  "exact*: a fast-scan row against the exact kernel on its own codebook file. "
                  f"Bar (issue 14): ppl at most +{100 * sv.PPL_BAR:.1f}% and KL at most "
                  f"{sv.KL_BAR}x the exact row's.", ""]
        lines += sv.table(rows, results, args.recipe_tokens) + [""]
        lines += ["![attention variants](attention_variants.png)", ""]
    for model_name in sorted({r["model_name"] for r in zeroshot}):
        rows = [r for r in zeroshot if r["model_name"] == model_name]
        lines += [f"## {model_name}, zero-shot accuracy (%), first {rows[0]['limit']} items per "
                  "task", "",
                  "lm-evaluation-harness scoring (`cqkv eval-tasks`); acc, not acc_norm. Both models "
                  "are near chance on most tasks, so the mean's standard error (from the per-task "
                  "binomial errors) is what a difference must exceed.", ""]
        lines += _zeroshot_table(rows) + [""]
    md = os.path.join(args.out, "README.md")
    open(md + ".tmp", "w").write("\n".join(lines) + "\n")
    os.replace(md + ".tmp", md)
    if results:
        plot(results, args)
    if variants:
        plot_variants(variants, results, args)


def plot(results, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = sorted({(r["model_name"], r["data_name"]) for r in results})
    families = sorted({r["family"] for r in results} - {"fp32", "fp16"})
    cmap = plt.cm.tab20
    style = {f: (cmap(i % 20), "osD^v<>"[i % 7]) for i, f in enumerate(families)}
    fig, axes = plt.subplots(len(panels), 2, figsize=(13, 4.2 * len(panels)), squeeze=False)
    for i, (m, d) in enumerate(panels):
        rows = [r for r in results if r["model_name"] == m and r["data_name"] == d]
        base = next((r["ppl"] for r in rows if r["format"] == "fp32"), None)
        for j, (key, label) in enumerate((("kld", "KL vs fp32 (nats)"),
                                          ("dppl", "perplexity vs fp32 (%)"))):
            ax = axes[i][j]
            for fam in families:
                pts = sorted((_bits(r), r["kld"] if key == "kld" else 100 * (r["ppl"] / base - 1))
                             for r in rows if r["family"] == fam)
                if pts:
                    color, marker = style[fam]
                    # Mixed rows are separate recipes, not a family swept over bits: no line.
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=fam,
                            color=color, lw=0 if fam.startswith("mixed") else 1, ms=5)
            ax.set_xscale("log", base=2)
            if key == "kld":
                ax.set_yscale("log")
            else:
                ax.set_yscale("symlog", linthresh=1)
                ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("bits per channel (per-token storage)")
            ax.set_ylabel(label)
            ax.set_title(f"{m} on {d}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4,
               fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    png = os.path.join(args.out, "quality_vs_bits.png")
    fig.savefig(png + ".tmp.png", dpi=100)
    os.replace(png + ".tmp.png", png)


def plot_variants(variants, results, args):
    """Issue 14's bar per variant: KL and perplexity against the exact recipe row of the same bits
    and window (the variants sit at 1 and 2 bits only, so the bits-sweep plot would hide them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fams = sorted({r["family"] for r in variants})
    groups = [(b, w) for b in (2.0, 1.0) for w in (False, True)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(1, len(fams))
    for j, (key, label, bar) in enumerate((
            ("kld", "KL / exact k-means recipe", sv.KL_BAR),
            ("ppl", "perplexity vs exact k-means recipe (%)", 100 * sv.PPL_BAR))):
        ax = axes[j]
        for i, fam in enumerate(fams):
            xs, ys = [], []
            for g, (bits, win) in enumerate(groups):
                r = next((r for r in variants if r["family"] == fam
                          and r["kv_bits_per_channel"] == bits and (":r32" in r["format"]) == win),
                         None)
                ref = sv.reference(r, results, args.recipe_tokens) if r else None
                if ref:
                    xs.append(g + (i - (len(fams) - 1) / 2) * width)
                    ys.append(r["kld"] / ref["kld"] if key == "kld"
                              else 100 * (r["ppl"] / ref["ppl"] - 1))
            ax.bar(xs, ys, width, label=fam[len(sv.FAMILY_PREFIX):],
                   color=plt.cm.tab10(i % 10))
        ax.axhline(bar, color="r", lw=1, ls="--")
        ax.axhline(1 if key == "kld" else 0, color="k", lw=0.8)
        if key == "kld":
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{b:g} bit{'s' if b > 1 else ''}" + (" + r32" if w else "")
                            for b, w in groups])
        ax.set_ylabel(label)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"issue 14 attention variants, {variants[0]['model_name']} on "
                 f"{variants[0]['data_name']} (dashed: the bar)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    png = os.path.join(args.out, "attention_variants.png")
    fig.savefig(png + ".tmp.png", dpi=100)
    os.replace(png + ".tmp.png", png)
