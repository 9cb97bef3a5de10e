#!/usr/bin/env python3
"""cqkv perplexity against the NumPy reference's perplexity on the same token ids.

Contracts used:
    CQKV tokenize --model M --text-file F          prints one JSON array of ints, BOS first
    CQKV perplexity --model M --data F --ctx N --json OUT [--max-windows K]
        JSON with at least ppl, nll, tokens, windows, ctx
If `cqkv tokenize --help` / `cqkv perplexity --help` mention --tokenizer, the llama2.c model.bin is given
--tokenizer shared/models/stories260K/tokenizer.bin; otherwise the engine is expected to find it beside the
model.

Protocol (reference): the token stream is what `cqkv tokenize` prints (BOS first); it is cut into
non-overlapping windows of ctx tokens, the last partial window dropped (and at most --max-windows windows);
each window is evaluated from an empty cache, and tokens 1..ctx-1 of the window are predicted from their
prefix; nll = mean negative log-likelihood over those (ctx-1) * windows tokens, ppl = exp(nll).

Text: the first 3000 characters of WikiText-2 test (shared/data/wikitext-2/wiki.test.raw), written into the
work dir. Model: stories260K, as llama2.c model.bin and as llama.cpp's GGUF (ctx 128 = the GGUF's recorded
context length). Tolerance: ppl within 1e-4 relative of the reference (fp32 engine vs float64 reference, see
test_forward.py), model.bin vs GGUF within 1e-4 relative.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402

CTX = 128
N_CHARS = 3000
TOL = 1e-4


def describe_mismatch(got, variants):
    """Which reference protocol variant the engine's ppl is closest to (diagnosis for a failure)."""
    best = min(variants.items(), key=lambda kv: abs(got - kv[1]) / kv[1])
    return f"closest reference variant: {best[0]} (ppl {best[1]:.6f})"


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_perplexity")
    work = H.workdir_for(args, "test_perplexity")
    st_dir = H.shared_path(args, "models", "stories260K")
    wiki = H.shared_path(args, "data", "wikitext-2", "wiki.test.raw")
    models = {"model.bin": os.path.join(st_dir, "model.bin"),
              "gguf": os.path.join(st_dir, "stories260K.llamacpp.gguf")}
    tokenizer_bin = os.path.join(st_dir, "tokenizer.bin")
    needed = list(models.values()) + [wiki, tokenizer_bin]
    absent = [p for p in needed if not os.path.exists(p)]
    if absent:
        suite.skip("all", f"shared data absent: {absent}")
        return suite.finish()

    ref_models = {k: R.load_model(p) for k, p in models.items()}
    if args.ref_only:
        suite.skip("cqkv checks", "--ref-only (nothing to tokenize with)")
        return suite.finish()
    cq = H.Cqkv(args.cqkv, args.timeout)
    if not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        return suite.finish()

    with open(wiki, encoding="utf-8") as f:
        text = f.read()[:N_CHARS]
    text_file = os.path.join(work, "wiki_test_3000.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(text)

    def extra_for(sub, key):
        if key == "model.bin" and "--tokenizer" in cq.help_text(sub):
            return ["--tokenizer", tokenizer_bin]
        return []

    # 1. token ids from the engine's tokenizer
    ids = {}
    for key, path in models.items():
        try:
            ids[key] = cq.tokenize(path, text_file, extra_for("tokenize", key))
        except H.CqkvError as e:
            suite.fail(f"cqkv tokenize {key}", str(e))
            continue
        t = ids[key]
        suite.check(f"cqkv tokenize {key}: BOS first, ids in range", len(t) > 1 and t[0] == 1
                    and min(t) >= 0 and max(t) < 512, f"{len(t)} ids, first {t[:6]}")
    if "model.bin" in ids and "gguf" in ids:
        suite.check("cqkv tokenize: model.bin+tokenizer.bin and GGUF vocab give the same ids",
                    ids["model.bin"] == ids["gguf"], f"{len(ids['model.bin'])} vs {len(ids['gguf'])} ids")
    if not ids:
        return suite.finish()
    tokens = ids.get("gguf") or ids.get("model.bin")
    if len(tokens) < 3 * CTX:
        suite.fail("token count", f"only {len(tokens)} tokens for {N_CHARS} chars; need >= {3 * CTX}")
        return suite.finish()

    # 2. reference perplexity (both formats, which must agree with each other)
    ref = {k: R.perplexity(m, tokens, CTX) for k, m in ref_models.items()}
    ref2 = R.perplexity(ref_models["model.bin"], tokens, CTX, max_windows=2)
    r = ref["model.bin"]
    print(f"       reference: {len(tokens)} tokens -> {r['windows']} windows of {CTX}, {r['tokens']} scored, "
          f"ppl {r['ppl']:.6f} (nll {r['nll']:.6f}); 2 windows: ppl {ref2['ppl']:.6f}")
    suite.close_check("ref: ppl model.bin vs GGUF", abs(ref["gguf"]["ppl"] / r["ppl"] - 1), 1e-9, "rel diff")
    variants = {"as specified": r["ppl"],
                "BOS forced at every window start": R.perplexity(ref_models["model.bin"], tokens, CTX,
                                                                  first_token=1)["ppl"],
                "stream without BOS": R.perplexity(ref_models["model.bin"], tokens[1:], CTX)["ppl"]}

    # 3. engine perplexity
    cpp = {}
    for key, path in models.items():
        out = os.path.join(work, f"ppl_{key.replace('.', '_')}.json")
        try:
            cpp[key] = c = cq.perplexity(path, text_file, CTX, out, extra=extra_for("perplexity", key))
        except H.CqkvError as e:
            suite.fail(f"cqkv perplexity {key}", str(e))
            continue
        rel = abs(float(c["ppl"]) / r["ppl"] - 1)
        ok = suite.close_check(f"cqkv perplexity {key}: ppl {float(c['ppl']):.6f} vs ref {r['ppl']:.6f}", rel, TOL,
                               "rel diff")
        if not ok:
            print(f"       {describe_mismatch(float(c['ppl']), variants)}")
        suite.check(f"cqkv perplexity {key}: windows, ctx", int(c["windows"]) == r["windows"] and int(c["ctx"]) == CTX,
                    f"windows {c['windows']} (ref {r['windows']}), ctx {c['ctx']} (ref {CTX})")
        nll = float(c["nll"])
        kind = ("mean" if abs(nll - r["nll"]) < TOL else
                "sum" if abs(nll - r["nll_sum"]) < TOL * r["tokens"] else None)
        suite.check(f"cqkv perplexity {key}: nll", kind is not None,
                    f"{nll:.6f} (ref mean {r['nll']:.6f}, sum {r['nll_sum']:.3f}; matches: {kind})")
        suite.check(f"cqkv perplexity {key}: tokens", int(c["tokens"]) in (r["tokens"], r["windows"] * CTX),
                    f"{c['tokens']} (ref scored {r['tokens']} or {r['windows'] * CTX} in windows)")
    if len(cpp) == 2:
        suite.close_check("cqkv perplexity model.bin vs GGUF", abs(float(cpp["gguf"]["ppl"]) /
                                                                    float(cpp["model.bin"]["ppl"]) - 1), TOL,
                          "rel diff")

    # 4. --max-windows
    out = os.path.join(work, "ppl_gguf_2win.json")
    try:
        c = cq.perplexity(models["gguf"], text_file, CTX, out, max_windows=2)
        suite.check("cqkv perplexity --max-windows 2: windows", int(c["windows"]) == 2, f"windows {c['windows']}")
        suite.close_check(f"cqkv perplexity --max-windows 2: ppl {float(c['ppl']):.6f} vs ref {ref2['ppl']:.6f}",
                          abs(float(c["ppl"]) / ref2["ppl"] - 1), TOL, "rel diff")
    except H.CqkvError as e:
        suite.fail("cqkv perplexity --max-windows 2", str(e))
    with open(os.path.join(work, "reference.json"), "w") as f:
        json.dump(dict(tokens=len(tokens), ref=ref, ref_2windows=ref2, variants=variants, cqkv=cpp), f, indent=1)
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
