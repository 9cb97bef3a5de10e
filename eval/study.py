#!/usr/bin/env python3
"""CQ study: perplexity and KL of every KV-cache format at equal bits per channel.

Calibrates CQ codebooks (uniform and Fisher k-means, post- and pre-RoPE keys) on C4 documents that
are not evaluation text, then runs `cqkv perplexity --kl-base fp32` for CQ and the per-channel /
per-token integer, NormalFloat and KIVI baselines on WikiText-2 test and the C4 hold-out, and writes
a Markdown table, JSON and a PNG plot (quality vs bits per channel, one line per method).

  python3 eval/study.py --cqkv build/cqkv --shared ../shared --out reports/cq_study
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

if __name__ == "__main__" and "numpy" not in sys.modules:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pyenv python without Debian's packages: use the system one
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

MODELS = {
    # name: (model, tokenizer, ctx, KIVI group: its default 32 where the head dim allows)
    "cq-tiny": ("models/cq-tiny/model.bin", "tokenizers/llama2.tokenizer.bin", 256, 32),
    "stories260K": ("models/stories260K/model.bin", "models/stories260K/tokenizer.bin", 256, 8),
}
DATA = {
    "wikitext2": "data/wikitext-2/wiki.test.raw",
    "c4": "data/c4/c4_validation_1900.jsonl:1800:1900",
}
CALIB_DATA = "data/c4/c4_validation_1900.jsonl:0:400"  # docs the C4 hold-out never sees
CQ_CONFIGS = ["2c8b", "4c8b", "8c8b"]


def baselines(kivi_group):
    """(family, spec) of the non-CQ formats, grouped by the bits per channel they target."""
    out = [("fp16", "fp16")]
    for b in (4, 2, 1):
        # KIVI's default 128-token fp16 window would be half of a 256-token window: use the
        # same 32-token window the CQ "+r32" runs get.
        out += [("int-token", f"int{b}-token"), ("int-channel", f"int{b}-channel"),
                ("kivi r32", f"kivi{b}:r32" + (f":g{kivi_group}" if kivi_group != 32 else ""))]
    out += [("nf-token", "nf4"), ("nf-token", "nf3"), ("nf-token", "nf2")]
    return out


def mixed(cq_1bit):
    """(family, spec) of mixed-precision formats (kv/mixed_spec.h): fp16 first/last layers and
    different K and V formats; cq_1bit is the 1-bit codebook used for all but the first layer."""
    return [("mixed fp16 ends", "int2-token;fp16@first1,last1"),
            ("mixed fp16 ends", "int2-token;fp16@first1"),
            ("mixed K/V", "K=int4-token,V=int2-token"),
            ("mixed K/V", "K=int2-token,V=int4-token"),
            ("mixed CQ fp16 first", f"cq:{cq_1bit}:r32;fp16@first1")]


def short_spec(spec):
    """The spec with every cq codebook path cut to its file name (tables, plots)."""
    return re.sub(r"cq:([^;@,]*)", lambda m: "cq:" + os.path.basename(m.group(1)), spec)


def run(cmd, log):
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(p.stdout + f"[{time.time() - t0:.1f} s, exit {p.returncode}]\n")
    log.flush()
    return p.returncode, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cqkv", default="build/cqkv")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="reports/cq_study")
    ap.add_argument("--models", default="cq-tiny,stories260K")
    ap.add_argument("--data", default="wikitext2,c4")
    ap.add_argument("--max-windows", type=int, default=60, help="windows per data set")
    ap.add_argument("--calib-tokens", default="16x256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated substrings of formats to run")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    runs_dir = os.path.join(args.out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    log = open(os.path.join(args.out, "study.log"), "a")
    results = []
    results_path = os.path.join(args.out, "results.json")
    for model_name in args.models.split(","):
        rel_model, rel_tok, ctx, kivi_group = MODELS[model_name]
        model = os.path.join(args.shared, rel_model)
        tok = os.path.join(args.shared, rel_tok)
        formats = list(baselines(kivi_group))
        calib = []
        for cfg in CQ_CONFIGS:
            for fisher in (False, True):
                calib.append((cfg, fisher, "post-rope"))
            calib.append((cfg, True, "pre-rope"))
        for cfg, fisher, keys in calib:
            name = f"{model_name}_{cfg}_{'fisher' if fisher else 'uniform'}_{keys}"
            cb = os.path.join(runs_dir, name + ".cqcb")
            family = f"CQ {'fisher' if fisher else 'uniform'} {keys}"
            formats.append((family, "cq:" + cb))
            if fisher and keys == "post-rope":  # the paper's later version: last 32 tokens fp16
                formats.append((family + " r32", "cq:" + cb + ":r32"))
            if args.only and not any(s in "cq:" + cb for s in args.only.split(",")):
                continue
            if not os.path.exists(cb):
                cmd = [args.cqkv, "calibrate", "-m", model, "--tokenizer", tok, "-t",
                       str(args.threads), "--data", os.path.join(args.shared, CALIB_DATA),
                       "--config", cfg, "--tokens", args.calib_tokens, "--keys", keys, "-o", cb,
                       "--json", os.path.join(runs_dir, name + ".calib.json")]
                if fisher:
                    cmd.append("--fisher")
                print(f"[{model_name}] calibrating {name}", file=sys.stderr, flush=True)
                rc, out = run(cmd, log)
                if rc != 0:
                    print(out, file=sys.stderr)
                    sys.exit(f"calibration failed: {name}")
        formats += mixed(os.path.join(runs_dir, f"{model_name}_8c8b_fisher_post-rope.cqcb"))
        for data_name in args.data.split(","):
            data = os.path.join(args.shared, DATA[data_name])
            for family, spec in [("fp32", "fp32")] + formats:
                if args.only and spec != "fp32" and not any(s in spec for s in args.only.split(",")):
                    continue
                tag = os.path.basename(spec.replace("cq:", "cq_")).replace(".cqcb", "").replace(":", "_")
                if ";" in spec or "@" in spec or "=" in spec:  # mixed: paths cut, separators gone
                    tag = re.sub(r"[^A-Za-z0-9_.+-]", "_", short_spec(spec).replace(".cqcb", ""))
                out_json = os.path.join(runs_dir, f"{model_name}_{data_name}_{tag}.json")
                if not os.path.exists(out_json):
                    cmd = [args.cqkv, "perplexity", "-q", "-m", model, "--tokenizer", tok, "-t",
                           str(args.threads), "--data", data, "--ctx", str(ctx), "--kv", spec,
                           "--kl-base", "fp32", "--max-windows", str(args.max_windows),
                           "--json", out_json]
                    print(f"[{model_name}/{data_name}] {spec}", file=sys.stderr, flush=True)
                    rc, out = run(cmd, log)
                    if rc != 0:
                        print(f"  failed: {out.strip().splitlines()[-1] if out.strip() else rc}",
                              file=sys.stderr)
                        continue
                r = json.load(open(out_json))
                r.update({"model_name": model_name, "data_name": data_name, "family": family,
                          "format": short_spec(spec)})
                results.append(r)
                tmp = results_path + ".tmp"
                json.dump(results, open(tmp, "w"), indent=1)
                os.replace(tmp, results_path)
    write_report(results, args)


def write_report(results, args):
    lines = ["# CQ study: KV-cache formats at equal bits per channel", "",
             f"`python3 eval/study.py --max-windows {args.max_windows} --calib-tokens "
             f"{args.calib_tokens}`; ctx 256, KL and top-1 agreement against the fp32 cache on "
             "the same windows. Bits/channel counts per-token storage (codes, scales, zero "
             "points), not tables shared by all sequences (CQ codebooks) nor full-precision "
             "windows (KIVI's recent tokens), which `bytes/token` amortises over the context.", ""]
    for model_name in sorted({r["model_name"] for r in results}):
        for data_name in sorted({r["data_name"] for r in results}):
            rows = [r for r in results if r["model_name"] == model_name and r["data_name"] == data_name]
            if not rows:
                continue
            rows.sort(key=lambda r: (-r["kv_bits_per_channel"], r["ppl"]))
            lines += [f"## {model_name}, {data_name} ({rows[0]['windows']} windows, "
                      f"{rows[0]['tokens']} predicted tokens)", "",
                      "| format | family | bits/channel | bytes/token (amortised) | ppl | KL (nats) | top-1 agree |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['format']} | {r['family']} | {r['kv_bits_per_channel']:.3g} | "
                             f"{r['kv_bytes_per_token']:.0f} | {r['ppl']:.3f} | {r['kld']:.4g} | "
                             f"{r['top1_agree']:.3f} |")
            lines.append("")
    md = os.path.join(args.out, "README.md")
    open(md + ".tmp", "w").write("\n".join(lines) + "\n")
    os.replace(md + ".tmp", md)
    plot(results, args)


def plot(results, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({r["model_name"] for r in results})
    datas = sorted({r["data_name"] for r in results})
    families = sorted({r["family"] for r in results} - {"fp32"})
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}  # same colour everywhere
    fig, axes = plt.subplots(len(models), len(datas), figsize=(6 * len(datas), 4.5 * len(models)),
                             squeeze=False)
    for i, m in enumerate(models):
        for j, d in enumerate(datas):
            ax = axes[i][j]
            rows = [r for r in results if r["model_name"] == m and r["data_name"] == d]
            base = [r for r in rows if r["format"] == "fp32"]
            for fam in families:
                pts = sorted((r["kv_bits_per_channel"], r["ppl"]) for r in rows if r["family"] == fam)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=fam,
                            color=colors[fam])
            if base:
                ax.axhline(base[0]["ppl"], color="k", ls="--", lw=1, label="fp32")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("bits per channel")
            ax.set_ylabel("perplexity")
            ax.set_title(f"{m} on {d}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    png = os.path.join(args.out, "quality_vs_bits.png")
    fig.savefig(png + ".tmp.png", dpi=110)
    os.replace(png + ".tmp.png", png)


if __name__ == "__main__":
    main()
