#!/usr/bin/env python3
"""The other architectures (shared/models/arch: qwen2, qwen3, llama3 tiny GGUFs written by llama.cpp's gguf-py)
in the float64 NumPy reference, against llama.cpp's own log-probs and against cqkv's logits.

Each model's .kld file holds llama.cpp's next-token log-probs for 6 chunks of 128 WikiText-2 tokens (first
token of each chunk replaced by BOS), positions 64..126, quantised to 16 bits over a 16-nat range (step
<= 2.4e-4 in log p). Checks per model:
1. Reference vs llama.cpp: mean KL(llama.cpp || ref) < 1e-5 nats and mean |d log p| < 4e-3 over the tokens
   llama.cpp gives p > 1e-3. llama.cpp runs in fp32 with an fp16 KV cache, which costs ~1e-6 in KL; a missing
   feature costs more (shared/README.md: ignoring rope_freqs.weight, the smallest, gives 8e-5), and the
   negative controls below check each feature's absence lands above 3e-5 on these very files.
2. cqkv vs reference on the first chunk (prefill) and on 24 tokens fed one by one (decode):
   max|cqkv - ref| / max|ref| < 1e-4, the bound of test_forward.py (fp32 rounding ~1e-6; a wrong feature
   gives 1e-2..1).
3. Random GGUFs written here (llama_ref.write_random_gguf) widen the shapes the shared files cover, cqkv vs
   reference at the same 1e-4, prefill / decode / chunks of 7, 40 tokens: qwen3 with Q8_0 matrices, head dim
   128 and GQA 8:1 (q_dim 1024 != dim 256); qwen2 with Q4_0, head dim 64, GQA 4:1, tied output; a Mistral-style
   llama (F16, GQA 8:1, base 1e6); a llama with rope_freqs and linear RoPE scaling x4 (BF16).
Negative controls (reference): llama3 without its frequency factors, qwen2 without its Q bias or with NORM
pairing, qwen3 without its K norm: mean KL > 3e-5.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402  (first: re-executes under an interpreter with numpy if needed)
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

MAX_KL = 1e-5
MAX_DLOGP = 4e-3
MIN_KL_ABLATED = 3e-5
TOL_CQKV = 1e-4
ARCHS = ("qwen2", "qwen3", "llama3")
RANDOM_MODELS = [
    ("rand_qwen3_q8_0_hd128_gqa8", dict(arch="qwen3", dim=256, hidden=256, n_heads=8, n_kv_heads=1, head_dim=128,
                                        dtype="Q8_0", tied=False, rope_base=1e6, seed=41)),
    ("rand_qwen2_q4_0_gqa4", dict(arch="qwen2", dim=256, hidden=288, n_heads=4, n_kv_heads=1, dtype="Q4_0",
                                  tied=True, rope_base=1e6, seed=42)),
    ("rand_mistral_f16_gqa8", dict(arch="llama", dim=512, hidden=256, n_heads=8, n_kv_heads=1, dtype="F16",
                                   tied=False, rope_base=1e6, seed=43)),
    ("rand_llama_bf16_freqs_linear", dict(arch="llama", dim=128, hidden=192, n_heads=2, n_kv_heads=1, dtype="BF16",
                                          tied=False, rope_freqs=True, rope_scale=4.0, rope_base=100.0, seed=44)),
]


def read_kld(path):
    """llama-perplexity --kl-divergence-base file -> (n_ctx, tokens (n_chunk, n_ctx), log-probs
    (n_chunk, n_ctx - 1 - n_ctx // 2, n_vocab) float64)."""
    b = open(path, "rb").read()
    if b[:8] != b"_logits_":
        raise R.RefError(f"{path}: not a llama.cpp log-prob file")
    n_ctx, n_vocab, n_chunk = np.frombuffer(b, "<i4", 3, 8)
    tokens = np.frombuffer(b, "<i4", n_chunk * n_ctx, 20).reshape(n_chunk, n_ctx)
    nv, per = 2 * ((n_vocab + 1) // 2) + 4, n_ctx - 1 - n_ctx // 2
    rows = np.frombuffer(b, "<u2", n_chunk * per * nv, 20 + 4 * tokens.size).reshape(n_chunk, per, nv)
    head = rows[..., :4].copy().view("<f4")  # (chunk, per, 2): scale, min log-prob
    lp = head[..., 1:2].astype(np.float64) + head[..., 0:1].astype(np.float64) * rows[..., 4:4 + n_vocab]
    return int(n_ctx), tokens, lp


def agreement(base_lp, lp):
    """llama-perplexity's KL sum (tokens above its -16 floor), mean |d log p| on p_base > 1e-3, top-1."""
    mask = base_lp > -16.0
    kl = np.where(mask, np.exp(base_lp) * (base_lp - lp), 0.0).sum(-1)
    likely = base_lp > np.log(1e-3)
    return float(kl.mean()), float(np.abs(base_lp - lp)[likely].mean()), float(
        (base_lp.argmax(-1) == lp.argmax(-1)).mean())


def ref_log_probs(model, tokens, n_ctx, bos, **kw):
    out = []
    for chunk in tokens:
        seg = chunk.copy()
        seg[0] = bos
        out.append(R.log_softmax(R.forward(model, seg, **kw))[n_ctx // 2:n_ctx - 1])
    return np.stack(out)


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_arch_models")
    work = H.workdir_for(args, "test_arch_models")
    cq = H.Cqkv(args.cqkv, args.timeout)
    run_cpp = not args.ref_only
    if run_cpp and not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        run_cpp = False
    for arch in ARCHS:
        name = f"{arch}-tiny"
        path = H.shared_path(args, "models", "arch", name + ".gguf")
        kld = H.shared_path(args, "models", "arch", name + ".kld")
        if not (os.path.exists(path) and os.path.exists(kld)):
            suite.skip(name, f"{path} or its .kld absent (shared/ folder not available)")
            continue
        model = R.load_model(path)
        bos = int(model.extra["gguf"].metadata["tokenizer.ggml.bos_token_id"])
        n_ctx, tokens, base = read_kld(kld)
        kl, dlp, top1 = agreement(base, ref_log_probs(model, tokens, n_ctx, bos))
        print(f"       {name}: reference vs llama.cpp: mean KL {kl:.3g}, mean |dlogp| {dlp:.3g}, top-1 {top1:.4f}")
        suite.close_check(f"{name} ref vs llama.cpp mean KL", kl, MAX_KL, "nats")
        suite.close_check(f"{name} ref vs llama.cpp mean |dlogp| (p > 1e-3)", dlp, MAX_DLOGP, "nats")

        controls = {"llama3": [("no rope_freqs", {"use_freq_factors": False})],
                    "qwen2": [("NORM pairing", {"rope_type": "norm"})], "qwen3": []}[arch]
        for label, kw in controls:
            kl_bad = agreement(base, ref_log_probs(model, tokens, n_ctx, bos, **kw))[0]
            suite.far_check(f"{name} ablated ({label}) mean KL", kl_bad, MIN_KL_ABLATED, "nats")
        for label, key in {"qwen2": [("no Q bias", "bq")], "qwen3": [("no K norm", "k_norm")]}.get(arch, []):
            saved = [lw[key] for lw in model.layers]
            for lw in model.layers:
                lw[key] = None
            kl_bad = agreement(base, ref_log_probs(model, tokens, n_ctx, bos))[0]
            for lw, s in zip(model.layers, saved):
                lw[key] = s
            suite.far_check(f"{name} ablated ({label}) mean KL", kl_bad, MIN_KL_ABLATED, "nats")

        if not run_cpp:
            continue
        seg = tokens[0].copy()
        seg[0] = bos
        ref = R.forward(model, seg)
        for chunk, n in ((None, n_ctx), (1, 24)):
            try:
                got = cq.logits(path, seg[:n], os.path.join(work, f"{name}.f32"), model.cfg["vocab_size"],
                                chunk=chunk)
            except H.CqkvError as e:
                suite.fail(f"{name} cqkv logits", str(e))
                continue
            suite.close_check(f"{name} cqkv vs ref logits ({'prefill' if chunk is None else 'decode'}, {n} tokens)",
                              R.rel_max_diff(got, ref[:n]), TOL_CQKV)
    rng = np.random.default_rng(5)
    for name, kw in RANDOM_MODELS:
        path = os.path.join(work, name + ".gguf")
        R.write_random_gguf(path, vocab=320, ctx=64, n_layers=2, **kw)
        model = R.load_model(path)
        toks = [1] + [int(t) for t in rng.integers(3, 320, 39)]
        ref = R.forward(model, toks)
        if kw.get("rope_freqs"):  # the factors and the scaling must matter on these 40 positions
            suite.far_check(f"{name} ref without frequency factors differs",
                            R.rel_max_diff(R.forward(model, toks, use_freq_factors=False), ref), 1e-3)
            model.cfg["rope_freq_scale"] = 1.0
            suite.far_check(f"{name} ref without linear scaling differs", R.rel_max_diff(R.forward(model, toks), ref),
                            1e-3)
            model.cfg["rope_freq_scale"] = 1.0 / kw["rope_scale"]
        if not run_cpp:
            continue
        for chunk in (None, 1, 7):
            try:
                got = cq.logits(path, toks, os.path.join(work, name + ".f32"), 320, chunk=chunk)
            except H.CqkvError as e:
                suite.fail(f"{name} cqkv logits", str(e))
                break
            suite.close_check(f"{name} cqkv vs ref logits (chunk {chunk or 'all'})", R.rel_max_diff(got, ref),
                              TOL_CQKV)
    if args.ref_only:
        suite.skip("cqkv checks", "--ref-only")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
