#!/usr/bin/env python3
"""cqkv K/V gradients (ForwardBackwardKv) against an independent float64 NumPy backpropagation (kv_grad_ref.py).

Contract under test:
    CQKV kv-grads --model M --tokens 1,5,9,... --out FILE [-t N]
writes raw little-endian float32: for each layer, six (n_tokens, kv_dim) row-major blocks
    k_pre, k, v, dk_pre, dk, dv
(keys before/after RoPE, values, and d loss / d each), where loss = sum_{i<n-1} -log softmax(logits_i)[t_{i+1}]
over one window at positions 0..n-1; and prints one JSON line with "loss", "n_predicted", "n_tokens",
"n_layers", "kv_dim".

Models: stories260K model.bin (llama2.c, real weights, GQA 8/4) with 20 tokens, cq-tiny model.bin (real
weights, MHA, dim 256, vocab 32000) with 24 tokens, the qwen2 / qwen3 / llama3 tiny GGUFs of shared/models/arch
(Q/K/V biases, per-head Q/K norms, RoPE frequency factors) with 20 tokens, and random GGUF v3 models written here with Q8_0 and Q4_0
matrices (GQA 4/2, untied classifier), so the input-gradient matmuls through quantised weights are covered;
the reference dequantises the same bytes.

Checks:
1. The reference itself: its forward gives llama_ref.forward's logits (rel 1e-12), and its manual backprop
   matches central finite differences of its own float64 loss on 6 sampled entries per kind (eps 1e-5:
   truncation error ~eps^2 f''' ~ 1e-10, rounding ~1e-16 |loss| / eps ~ 1e-9; measured ~3e-9), to 1e-6 of
   max|g|, while any wrong term is O(1) off.
2. cqkv vs reference, per layer and block: max|cqkv - ref| / max|ref| < 1e-4 for the activations (as the
   logits check) and < 2e-4 for the gradients. cqkv computes in fp32 (rounding ~6e-8 per operation); a
   gradient passes backwards through the classifier, every later layer and the attention softmax, each
   adding ~1e-6 relative, so a few 1e-6 is expected (measured 1e-6..3e-6), while a missed path (the Q
   path, the GQA group sum, the inverse rotation, the RMSNorm Jacobian) is off by 1e-2..1. A negative
   control checks that dk itself is far (> 0.1) from dk_pre.
3. Loss: |cqkv - ref| / ref < 1e-5.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402  (first: re-executes under an interpreter with numpy if needed)
import harness as H  # noqa: E402
import kv_grad_ref as G  # noqa: E402
import numpy as np  # noqa: E402

TOL_ACT = 1e-4
TOL_GRAD = 2e-4
TOL_LOSS = 1e-5
TOL_REF_FD = 1e-6
BLOCKS = ("k_pre", "k", "v", "dk_pre", "dk", "dv")


def run_kv_grads(cq, model_path, tokens, out, n_layers, kv_dim):
    if os.path.exists(out):
        os.remove(out)
    stdout = cq.run(["kv-grads", "--model", model_path, "--tokens", ",".join(str(int(t)) for t in tokens),
                     "--out", out, "-t", 2])
    try:
        summary = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as e:
        raise H.CqkvError(f"cqkv kv-grads printed no JSON summary ({e}): {stdout[:200]!r}")
    n = len(tokens)
    a = np.fromfile(out, dtype="<f4")
    want = n_layers * len(BLOCKS) * n * kv_dim
    if a.size != want:
        raise H.CqkvError(f"{out}: {a.size} floats, expected layers*6*n*kv_dim = {want}")
    a = a.astype(np.float64).reshape(n_layers, len(BLOCKS), n, kv_dim)
    if not np.all(np.isfinite(a)):
        raise H.CqkvError(f"{out}: contains NaN/Inf")
    return summary, {name: a[:, i] for i, name in enumerate(BLOCKS)}


def check_reference(suite, name, model, tokens, ref, rng):
    logits, _ = G.forward_kv(model, tokens)
    suite.close_check(f"{name} ref: forward_kv logits == llama_ref.forward",
                      R.rel_max_diff(logits, R.forward(model, tokens)), 1e-12)
    L, n, kv_dim = model.cfg["n_layers"], len(tokens), ref["dk"][0].shape[1]
    for kind in G.KINDS:
        worst = 0.0
        for _ in range(6):
            l, t, ch = int(rng.integers(L)), int(rng.integers(n - 1)), int(rng.integers(kv_dim))
            eps = 1e-5
            fd = (G.window_loss(model, tokens, (l, kind, t, ch, eps))
                  - G.window_loss(model, tokens, (l, kind, t, ch, -eps))) / (2 * eps)
            g = ref["d" + kind][l]
            worst = max(worst, abs(g[t, ch] - fd) / np.abs(g).max())
        suite.close_check(f"{name} ref: backprop d{kind} vs float64 finite differences (6 entries)", worst,
                          TOL_REF_FD, "max|g - fd|/max|g|")


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_kv_gradients")
    work = H.workdir_for(args, "test_kv_gradients")
    cq = H.Cqkv(args.cqkv, args.timeout)
    run_cpp = not args.ref_only
    if run_cpp and not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        run_cpp = False
    rng = np.random.default_rng(77)

    cases = []
    st_bin = H.shared_path(args, "models", "stories260K", "model.bin")
    if os.path.exists(st_bin):
        toks = [1] + [int(t) for t in rng.integers(3, 512, 19)]
        cases.append(("stories260K", st_bin, toks))
    else:
        suite.skip("stories260K", f"{st_bin} absent (shared/ folder not available)")
    tiny = H.shared_path(args, "models", "cq-tiny", "model.bin")
    if os.path.exists(tiny):
        cases.append(("cq-tiny", tiny, [1] + [int(t) for t in rng.integers(3, 32000, 23)]))
    else:
        suite.skip("cq-tiny", f"{tiny} absent (shared/ folder not available)")
    # Other architectures (shared/models/arch): Q/K/V biases and NEOX RoPE (qwen2), per-head Q/K norms with
    # q_dim != dim (qwen3), Llama-3.1 frequency factors with F16 weights (llama3).
    for arch in ("qwen2", "qwen3", "llama3"):
        path = H.shared_path(args, "models", "arch", f"{arch}-tiny.gguf")
        if os.path.exists(path):
            cases.append((f"{arch}-tiny", path, [1] + [int(t) for t in rng.integers(3, 512, 19)]))
        else:
            suite.skip(f"{arch}-tiny", f"{path} absent (shared/ folder not available)")
    for dtype, seed in (("Q8_0", 31), ("Q4_0", 32)):
        path = os.path.join(work, f"rand_{dtype.lower()}.gguf")
        R.write_random_gguf(path, dim=64, hidden=96, n_layers=2, n_heads=4, n_kv_heads=2, vocab=300, ctx=64,
                            dtype=dtype, tied=False, seed=seed)
        cases.append((f"rand_{dtype}", path, [1] + [int(t) for t in rng.integers(3, 300, 15)]))

    for name, path, toks in cases:
        model = R.load_model(path)
        ref = G.kv_gradients(model, toks)
        L, kv_dim = model.cfg["n_layers"], ref["dk"][0].shape[1]
        print(f"       {name}: {L} layers, kv_dim {kv_dim}, {len(toks)} tokens, ref loss {ref['loss']:.4f}, "
              f"max|dk| {max(np.abs(g).max() for g in ref['dk']):.3e}, "
              f"max|dv| {max(np.abs(g).max() for g in ref['dv']):.3e}")
        check_reference(suite, name, model, toks, ref, rng)
        if not run_cpp:
            continue
        try:
            summary, got = run_kv_grads(cq, path, toks, os.path.join(work, f"{name}.f32"), L, kv_dim)
        except H.CqkvError as e:
            suite.fail(f"{name} cqkv kv-grads", str(e))
            continue
        suite.check(f"{name} summary shapes",
                    summary.get("n_tokens") == len(toks) and summary.get("n_layers") == L
                    and summary.get("kv_dim") == kv_dim and summary.get("n_predicted") == len(toks) - 1,
                    json.dumps({k: summary.get(k) for k in ("n_tokens", "n_layers", "kv_dim", "n_predicted")}))
        suite.close_check(f"{name} loss vs ref", abs(summary.get("loss", np.nan) - ref["loss"]) / ref["loss"],
                          TOL_LOSS, f"cqkv {summary.get('loss')} ref {ref['loss']:.6f}; |diff|/ref")
        for block in BLOCKS:
            tol = TOL_ACT if block in G.KINDS else TOL_GRAD
            worst = max(R.rel_max_diff(got[block][l], ref[block][l]) for l in range(L))
            suite.close_check(f"{name} {block} vs ref (worst layer)", worst, tol, "max|diff|/max|ref|")
        # Negative control: without the inverse rotation dk_pre would be dk, which is far from the truth.
        suite.far_check(f"{name} dk_pre differs from dk (rotation matters)",
                        max(R.rel_max_diff(got["dk"][l], ref["dk_pre"][l]) for l in range(L)), 0.1,
                        "max|dk - ref dk_pre|/max|ref dk_pre|")
    if args.ref_only:
        suite.skip("cqkv checks", "--ref-only")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
