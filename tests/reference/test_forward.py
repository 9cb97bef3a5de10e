#!/usr/bin/env python3
"""cqkv forward pass (logits) against the independent float64 NumPy reference (llama_ref.py).

Contract under test:
    CQKV logits --model M --tokens 1,5,9,... --out FILE [--chunk K] [--kv fp32|fp16] [-t N]
writes raw little-endian float32 logits, shape (n_tokens, vocab), row-major. --chunk K feeds the tokens in
blocks of K through the KV cache (K=1: token-by-token decode; default: all at once = prefill).

Models: (a) stories260K model.bin (llama2.c, GQA 8/4), (b) the same model as llama.cpp's GGUF, (c) cq-tiny
model.bin (vocab 32000, dim 256, hidden 688), (d) random GGUF v3 llama models written here: F32 MHA tied,
F32 GQA 8/2 untied, F16, BF16, Q8_0, Q4_0 (freq_base 500000, rms eps 1e-6). Each is run with chunk=all
(prefill), chunk=1 (decode), chunk=7 and chunk=16 (multi-token chunks on a filled cache); stories260K and
the GQA random model also with --kv fp16.

Tolerance: max|cqkv - ref| / max|ref| < 1e-4 for every model and chunking. The engine computes in fp32; each
logit comes from a few layers of dot products over at most 688 terms, whose fp32 rounding error is ~1e-6
relative (sqrt(688) * 6e-8 random-walk, 688 * 6e-8 = 4e-5 worst case) and is not amplified much by a few
layers of rmsnorm/softmax. 1e-4 is therefore loose for a correct engine, yet a wrong rope pairing, rope
base, GQA mapping, mask, norm or a mis-read tensor gives 1e-2..1. The quantised models are compared against
the reference's dequantisation of the same stored bytes, so the same bound holds, provided the engine
dequantises the weights exactly and does not quantise activations (llama.cpp-style Q8 activations would
need a looser bound). --kv fp16 is checked at 5e-3 (fp16 rounds K/V to 2^-11 relative).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402  (first: re-executes under an interpreter with numpy if needed)
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

TOL = 1e-4
TOL_KV_FP16 = 5e-3

# Random GGUFs: (name, dtype, n_heads, n_kv_heads, tied, seed)
RANDOM_MODELS = [
    ("rand_f32_mha", "F32", 4, 4, True, 11),
    ("rand_f32_gqa", "F32", 8, 2, False, 12),
    ("rand_f16", "F16", 4, 2, False, 13),
    ("rand_bf16", "BF16", 4, 4, True, 14),
    ("rand_q8_0", "Q8_0", 4, 2, False, 15),
    ("rand_q4_0", "Q4_0", 4, 4, True, 16),
]


def random_tokens(rng, n, vocab):
    t = rng.integers(0, vocab, n)
    t[0] = 1  # BOS
    return [int(x) for x in t]


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_forward")
    work = H.workdir_for(args, "test_forward")
    cq = H.Cqkv(args.cqkv, args.timeout)
    run_cpp = not args.ref_only
    if run_cpp and not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        run_cpp = False
    rng = np.random.default_rng(2024)

    # name -> (path, tokens, extra checks)
    cases = []
    st_bin = H.shared_path(args, "models", "stories260K", "model.bin")
    st_gguf = H.shared_path(args, "models", "stories260K", "stories260K.llamacpp.gguf")
    tiny = H.shared_path(args, "models", "cq-tiny", "model.bin")
    st_tokens = random_tokens(rng, 48, 512)
    for name, path, toks in [("a:stories260K.bin", st_bin, st_tokens), ("b:stories260K.gguf", st_gguf, st_tokens),
                             ("c:cq-tiny.bin", tiny, random_tokens(rng, 64, 32000))]:
        if os.path.exists(path):
            cases.append((name, path, toks))
        else:
            suite.skip(name, f"{path} absent (shared/ folder not available)")

    for name, dtype, nh, nkv, tied, seed in RANDOM_MODELS:
        path = os.path.join(work, f"{name}.gguf")
        R.write_random_gguf(path, dim=64, hidden=192, n_layers=2, n_heads=nh, n_kv_heads=nkv, vocab=320, ctx=128,
                            dtype=dtype, tied=tied, seed=seed, rope_base=500000.0, norm_eps=1e-6)
        cases.append((f"d:{name}", path, random_tokens(rng, 40, 320)))

    refs = {}
    for name, path, toks in cases:
        try:
            m = R.load_model(path)
            refs[name] = (m, R.forward(m, toks))
        except R.RefError as e:
            suite.fail(f"{name} reference", str(e))

    # Reference self-consistency: the same stories260K weights in two formats give the same logits.
    a, b = refs.get("a:stories260K.bin"), refs.get("b:stories260K.gguf")
    if a and b:
        g = b[0].extra["gguf"]
        same = np.array_equal(g.tensor("output.weight"), g.tensor("token_embd.weight"))
        suite.check("ref: stories260K.gguf output.weight == token_embd.weight", same,
                    "stored separately, bitwise equal" if same else "differ")
        suite.close_check("ref: stories260K model.bin vs GGUF logits", R.rel_max_diff(b[1], a[1]), 1e-9,
                          "max|diff|/max|logit| (only eps 1e-5 vs fp32(1e-5) differs)")
    for name, (m, lg) in refs.items():
        print(f"       {name}: {m.cfg['n_layers']}L dim {m.cfg['dim']} heads {m.cfg['n_heads']}/{m.cfg['n_kv_heads']} "
              f"vocab {m.cfg['vocab_size']} types {m.cfg.get('tensor_types', ['F32'])} "
              f"max|logit| {np.abs(lg).max():.2f} logit std {lg.std():.2f}")

    if run_cpp:
        cpp = {}
        for name, path, toks in cases:
            if name not in refs:
                continue
            m, ref = refs[name]
            V = m.cfg["vocab_size"]
            # chunk=16: multi-token chunks on top of a filled cache (40 tokens = 16+16+8), in case the engine
            # only switches to its batched (GEMM) prefill kernels above some chunk size.
            modes = [("chunk=all", {}), ("chunk=1", dict(chunk=1, threads=1)), ("chunk=7", dict(chunk=7, threads=2)),
                     ("chunk=16", dict(chunk=16))]
            for label, kw in modes:
                out = os.path.join(work, f"{name.split(':')[1]}_{label.replace('=', '')}.f32")
                try:
                    got = cq.logits(path, toks, out, V, **kw)
                except H.CqkvError as e:
                    suite.fail(f"{name} {label}", str(e))
                    continue
                cpp[(name, label)] = got
                suite.close_check(f"{name} {label} vs ref", R.rel_max_diff(got, ref), TOL)
        if ("a:stories260K.bin", "chunk=all") in cpp and ("b:stories260K.gguf", "chunk=all") in cpp:
            suite.close_check("cqkv: stories260K model.bin vs GGUF logits",
                              R.rel_max_diff(cpp[("b:stories260K.gguf", "chunk=all")],
                                             cpp[("a:stories260K.bin", "chunk=all")]), TOL)
        # fp16 KV cache: close to the reference, and actually different from the fp32 cache.
        for name in ("a:stories260K.bin", "d:rand_f32_gqa"):
            case = next((c for c in cases if c[0] == name), None)
            if case is None or name not in refs:
                continue
            _, path, toks = case
            m, ref = refs[name]
            out = os.path.join(work, f"{name.split(':')[1]}_kvfp16.f32")
            try:
                got = cq.logits(path, toks, out, m.cfg["vocab_size"], chunk=7, kv="fp16")
            except H.CqkvError as e:
                suite.fail(f"{name} --kv fp16 chunk=7", str(e))
                continue
            suite.close_check(f"{name} --kv fp16 chunk=7 vs ref", R.rel_max_diff(got, ref), TOL_KV_FP16)
            base = cpp.get((name, "chunk=7"))
            if base is not None:
                suite.far_check(f"{name} --kv fp16 differs from fp32 cache", R.rel_max_diff(got, base), 0.0)
    elif args.ref_only:
        suite.skip("cqkv checks", "--ref-only")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
