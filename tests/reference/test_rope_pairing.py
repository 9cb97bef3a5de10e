#!/usr/bin/env python3
"""RoPE pairing and base: proves the forward-pass comparison can tell the two RoPE conventions apart.

GGUF `llama` models (and llama2.c checkpoints) rotate adjacent channel pairs (2i, 2i+1) within each head
("norm"); GPT-NeoX-style models rotate (i, i + head_dim/2) ("neox"). The engine must match the reference run
with "norm" (max|diff|/max|logit| < 1e-4) and must NOT match it run with "neox" (> 1e-2), otherwise the
forward test could not catch a pairing bug. Likewise the random GGUF stores llama.rope.freq_base = 500000:
the engine must not match the reference run with the default base 10000 (a missed metadata key).

Contract used: CQKV logits --model M --tokens ... --out FILE (raw fp32, (n_tokens, vocab)).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

TOL_MATCH = 1e-4
TOL_DIFFER = 1e-2


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_rope_pairing")
    work = H.workdir_for(args, "test_rope_pairing")
    cq = H.Cqkv(args.cqkv, args.timeout)
    run_cpp = not args.ref_only
    if run_cpp and not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        run_cpp = False

    rng = np.random.default_rng(7)
    cases = []
    path = os.path.join(work, "rope_f32.gguf")
    R.write_random_gguf(path, dim=64, hidden=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab=300, ctx=128,
                        dtype="F32", tied=False, seed=31, rope_base=500000.0, norm_eps=1e-6)
    toks = [1] + [int(t) for t in rng.integers(0, 300, 39)]
    cases.append(("random GGUF (base 500000)", path, toks, True))
    st = H.shared_path(args, "models", "stories260K", "model.bin")
    if os.path.exists(st):
        cases.append(("stories260K model.bin", st, [1] + [int(t) for t in rng.integers(3, 512, 39)], False))
    else:
        suite.skip("stories260K model.bin", f"{st} absent")

    for name, path, toks, check_base in cases:
        m = R.load_model(path)
        ref_norm = R.forward(m, toks, rope_type="norm")
        ref_neox = R.forward(m, toks, rope_type="neox")
        ref_base = R.forward(m, toks, rope_base=10000.0) if check_base else None
        # The reference itself must separate the variants, else the negative controls prove nothing.
        suite.far_check(f"ref {name}: norm vs neox", R.rel_max_diff(ref_neox, ref_norm), TOL_DIFFER)
        if check_base:
            suite.far_check(f"ref {name}: base 500000 vs 10000", R.rel_max_diff(ref_base, ref_norm), TOL_DIFFER)
        if not run_cpp:
            continue
        out = os.path.join(work, f"{'random' if check_base else 'stories'}_logits.f32")
        try:
            got = cq.logits(path, toks, out, m.cfg["vocab_size"])
        except H.CqkvError as e:
            suite.fail(f"cqkv {name}", str(e))
            continue
        suite.close_check(f"cqkv {name} vs ref rope=norm", R.rel_max_diff(got, ref_norm), TOL_MATCH)
        suite.far_check(f"cqkv {name} vs ref rope=neox (must differ)", R.rel_max_diff(got, ref_neox), TOL_DIFFER)
        if check_base:
            suite.far_check(f"cqkv {name} vs ref base=10000 (must differ)", R.rel_max_diff(got, ref_base),
                            TOL_DIFFER)
    if args.ref_only:
        suite.skip("cqkv checks", "--ref-only")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
