#!/usr/bin/env python3
"""CQ study: perplexity, KL and zero-shot accuracy of every KV-cache format at equal bits.

Calibrates CQ codebooks on C4 documents that are not evaluation text (the first study's grid on
docs 0..399 with 16 x 256 tokens, and the default recipe: Fisher, pre-RoPE keys, 128 x 256 tokens of
docs 0..1799), then runs `cqkv perplexity --kl-base fp32` for CQ and the integer, NormalFloat, KIVI,
Hadamard-rotated integer, TurboQuant-style and mixed-precision formats on WikiText-2 test and the
C4 hold-out (docs 1800..1899), and `cqkv eval-tasks` for a zero-shot table. Issue 14's attention
variants (study_variants.py: fast-scan keys, additive and residual values, rope-comm keys, 4-bit
values) run on cq-tiny's C4 hold-out (decode mode where the kernel approximates), judged
against the exact k-means recipe. Writes README.md, results.json, zeroshot.json,
quality_vs_bits.png and attention_variants.png; FINDINGS.md is written by hand from them.

Every run is cached under OUT/runs (JSON beside the codebooks); rerun parts with --parts, --only,
--skip, or redraw the report from the cache with --cached-only.

  python3 eval/study.py --cqkv build/cqkv --shared ../shared --out reports/cq_study
"""
import argparse
import json
import os
import sys

if __name__ == "__main__" and "numpy" not in sys.modules:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pyenv python without Debian's packages: use the system one
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_formats as sf  # noqa: E402
import study_report  # noqa: E402
import study_variants as sv  # noqa: E402
from study_runs import Runner  # noqa: E402


def selected(args, spec):
    """--only / --skip: comma-separated substrings of the short spec (fp32 always runs)."""
    s = sf.short_spec(spec)
    if spec == "fp32":
        return True
    if args.only and not any(x in s for x in args.only.split(",")):
        return False
    return not (args.skip and any(x in s for x in args.skip.split(",")))


def ppl_formats(model_name, args, runs_dir):
    """(family, spec, codebooks) of every perplexity row of one model."""
    kivi_group = sf.MODELS[model_name][3]
    cbs = sf.codebooks(model_name, args.recipe_tokens)
    cb2 = sf.recipe(model_name, args.recipe_tokens, 2)
    cb1 = sf.recipe(model_name, args.recipe_tokens, 1)
    rows = [("fp32", "fp32", ())]
    rows += [(fam, spec, ()) for fam, spec in sf.baselines(kivi_group)]
    rows += [(fam, spec, (cb,)) for fam, spec, cb in sf.cq_formats(cbs, runs_dir)]
    rows += [(fam, spec, (cb2, cb1)) for fam, spec in
             sf.mixed(cb2.path(runs_dir), cb1.path(runs_dir))]
    return rows


def zeroshot_formats(model_name, args, runs_dir):
    """The zero-shot table's rows: fp16, the recipe's CQ at 2 and 1 bits, integer and rotated
    baselines near those bits, one mixed row. Windowed formats (KIVI, CQ :r32) only with
    --zeroshot-windows: eval-tasks prefills in blocks, which needs the per-query window fix."""
    cb2 = sf.recipe(model_name, args.recipe_tokens, 2)
    cb1 = sf.recipe(model_name, args.recipe_tokens, 1)
    rows = [("fp32", "fp32", ()), (cb2.family, "cq:" + cb2.path(runs_dir), (cb2,)),
            (cb1.family, "cq:" + cb1.path(runs_dir), (cb1,))]
    rows += [(fam, spec, ()) for fam, spec in sf.baselines(sf.MODELS[model_name][3])
             if spec in ("int2-channel:hadamard", "tq2", "tq2:qjl", "int2-token:hadamard",
                         "int2-token", "int4-token:hadamard")]
    rows += [("mixed fp16 ends", "int2-token;fp16@first1,last1", ()), ("fp16", "fp16", ())]
    if args.zeroshot_windows:
        kg = sf.MODELS[model_name][3]
        rows += [(cb2.family + " r32", "cq:" + cb2.path(runs_dir) + ":r32", (cb2,)),
                 ("kivi r32", "kivi2:r32" + (f":g{kg}" if kg != 32 else ""), ())]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cqkv", default="build/cqkv")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="reports/cq_study")
    ap.add_argument("--models", default="cq-tiny,stories260K")
    ap.add_argument("--data", default="wikitext2,c4")
    ap.add_argument("--parts", default="ppl,zeroshot,report",
                    help="comma list of ppl (perplexity/KL), zeroshot, report")
    ap.add_argument("--max-windows", type=int, default=24, help="perplexity windows per data set")
    ap.add_argument("--recipe-tokens", default="128x256",
                    help="calibration windows x tokens of the default recipe's codebooks")
    ap.add_argument("--window-batch", type=int, default=512,
                    help="-b for formats with an fp16 window (1 before the per-query prefill fix)")
    ap.add_argument("--limit", default="cq-tiny=20,stories260K=40",
                    help="zero-shot items per task: N, or MODEL=N,... (the study's runs)")
    ap.add_argument("--tasks", default=sf.ZEROSHOT_TASKS)
    ap.add_argument("--zeroshot-windows", action="store_true",
                    help="also run windowed formats (CQ :r32, KIVI) zero-shot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated substrings of formats to run")
    ap.add_argument("--skip", default="", help="comma-separated substrings of formats not to run")
    ap.add_argument("--cached-only", action="store_true",
                    help="run nothing; report what the cache holds")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    limits = (dict((k, int(v)) for k, v in (x.split("=") for x in args.limit.split(",")))
              if "=" in args.limit else {m: int(args.limit) for m in sf.MODELS})

    runs_dir = os.path.join(args.out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    if not args.cached_only and ("ppl" in parts or "zeroshot" in parts):
        if not os.path.exists(args.cqkv):
            sys.exit(f"study: --cqkv {args.cqkv} does not exist (build the cqkv_cli target)")
    runner = Runner(args, runs_dir, open(os.path.join(args.out, "study.log"), "a"))
    results, zeroshot = [], []
    for model_name in args.models.split(","):
        if model_name not in sf.MODELS:
            sys.exit(f"study: unknown --models entry '{model_name}' (known: {', '.join(sf.MODELS)})")
        for data_name in args.data.split(","):
            rows = [(fam, spec, cbs, None)
                    for fam, spec, cbs in ppl_formats(model_name, args, runs_dir)]
            if (model_name, data_name) == sv.PROTOCOL:
                rows += sv.rows(model_name, args.recipe_tokens, runs_dir)
            for family, spec, cbs, batch in rows:
                if not selected(args, spec):
                    continue
                r = runner.perplexity(model_name, data_name, spec, cbs, batch=batch,
                                      may_run="ppl" in parts and not args.cached_only)
                if r is not None:
                    r.update({"model_name": model_name, "data_name": data_name,
                              "family": family, "format": sf.short_spec(spec)})
                    results.append(r)
        for family, spec, cbs in zeroshot_formats(model_name, args, runs_dir):
            if not selected(args, spec):
                continue
            r = runner.eval_tasks(model_name, spec, limits.get(model_name, 40), cbs,
                                  may_run="zeroshot" in parts and not args.cached_only)
            if r is not None:
                r.update({"model_name": model_name, "family": family,
                          "format": sf.short_spec(spec)})
                zeroshot.append(r)
    if "report" in parts:
        for name, rows in (("results.json", results), ("zeroshot.json", zeroshot)):
            path = os.path.join(args.out, name)
            json.dump(rows, open(path + ".tmp", "w"), indent=1)
            os.replace(path + ".tmp", path)
        study_report.write(results, zeroshot, args)


if __name__ == "__main__":
    main()
