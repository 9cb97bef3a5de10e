#!/usr/bin/env python3
"""Checks of the NumPy reference itself (needs no cqkv binary): the oracle must be right before the engine
is judged by it.

- quantisers/dequantisers on constructed inputs with known byte layouts and answers (Q4_0, Q8_0, BF16, F16);
- the GGUF writer and reader round-trip (metadata, ne order, alignment, every tensor type);
- the reader on llama.cpp's own GGUF of stories260K: every tensor bitwise equal to the llama2.c checkpoint;
- forward-pass invariants: causality, GQA mapping (kv head h // (n_heads/n_kv)), RoPE known answers;
- real-model evidence: stories260K gives a low perplexity on a TinyStories-style text, and a much higher one
  with the wrong RoPE pairing or the wrong GQA mapping. (The text is tokenised here with a small greedy
  highest-score-merge BPE over tokenizer.bin, good enough for this purpose; the engine's tokenizer is not
  involved.)
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
         "friends. One day, she saw a big red ball under a tree. She ran to the ball and picked it up. Her mom "
         "said, \"Lily, be careful!\" Lily smiled and said, \"I will, Mom.\" They played with the ball all day "
         "and had a lot of fun. The end.")


def check_quant(suite):
    # Q4_0: x = (j - 8) / 2 in both halves -> max magnitude -4 -> d = 0.5, q_j = j; byte j = j | j << 4.
    x = np.concatenate([np.arange(16) - 8.0, np.arange(16) - 8.0]).astype(np.float32) * 0.5
    b = R.quantize_q4_0(x)
    want = struct.pack("<e", 0.5) + bytes(j | (j << 4) for j in range(16))
    suite.check("Q4_0 known bytes", b == want, b.hex())
    back = R.dequantize(np.frombuffer(b, np.uint8), R.GGML_Q4_0, 32)
    suite.check("Q4_0 dequant exact on grid", np.array_equal(back, x), "")
    # Q4_0 positive max: d = 8/-8 = -1, q = trunc(-x + 8.5) clipped to 15.
    x = np.zeros(32, np.float32)
    x[0], x[1], x[17] = 8.0, -7.0, 2.0
    b = R.quantize_q4_0(x)
    d = struct.unpack("<e", b[:2])[0]
    q = np.frombuffer(b[2:], np.uint8)
    suite.check("Q4_0 signed max", d == -1.0 and (q[0] & 15) == 0 and (q[1] & 15) == 15 and (q[1] >> 4) == 6
                and (q[2] & 15) == 8, f"d={d} bytes={b[2:6].hex()}")
    # Q8_0: amax 127 -> d = 1, q = x; element order = storage order.
    x = np.array([127, -127, 0, 1, -1, 5, -64, 100] * 4, np.float32)
    b = R.quantize_q8_0(x)
    suite.check("Q8_0 known bytes", b == struct.pack("<e", 1.0) + x.astype(np.int8).tobytes(), b[:10].hex())
    # Q8_0 round trip error <= d/2 (+ fp16 scale rounding) on random data, several blocks.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    back = R.dequantize(np.frombuffer(R.quantize_q8_0(x), np.uint8), R.GGML_Q8_0, x.size).reshape(x.shape)
    dmax = np.abs(x.reshape(-1, 32)).max(1) / 127
    err = np.abs(back - x).reshape(-1, 32).max(1) / dmax
    suite.check("Q8_0 round trip |err| <= 0.51 d", np.all(err <= 0.51), f"max err/d = {err.max():.3f}")
    back4 = R.dequantize(np.frombuffer(R.quantize_q4_0(x), np.uint8), R.GGML_Q4_0, x.size).reshape(x.shape)
    d4 = np.abs(x.reshape(-1, 32)).max(1) / 8
    err4 = np.abs(back4 - x).reshape(-1, 32).max(1) / d4
    suite.check("Q4_0 round trip |err| <= 1.01 d", np.all(err4 <= 1.01), f"max err/d = {err4.max():.3f}")
    # BF16 round to nearest even.
    v = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5], np.float32)
    bits = R.to_bf16_bits(v)
    suite.check("BF16 rounding", list(bits) == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020], [hex(t) for t in bits])
    back = R.dequantize(bits.view(np.uint8), R.GGML_BF16, v.size)
    suite.check("BF16 dequant", list(back) == [1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, -2.5], str(back))
    h = np.array([0.1, -3.0, 65504.0], np.float16)
    suite.check("F16 dequant", np.array_equal(R.dequantize(h.view(np.uint8), R.GGML_F16, 3), h.astype(np.float32)), "")


def check_gguf_roundtrip(suite, work):
    for dtype in ("F32", "F16", "BF16", "Q8_0", "Q4_0"):
        path = os.path.join(work, f"rt_{dtype}.gguf")
        cfg = R.write_random_gguf(path, dim=64, hidden=96, n_layers=2, n_heads=8, n_kv_heads=2, vocab=300, ctx=64,
                                  dtype=dtype, tied=(dtype != "F32"), seed=5, rope_base=250000.0, norm_eps=1e-6)
        g = R.GGUFFile(path)
        md = g.metadata
        ok = (g.version == 3 and md["general.architecture"] == "llama" and md["llama.embedding_length"] == 64
              and md["llama.feed_forward_length"] == 96 and md["llama.attention.head_count_kv"] == 2
              and md["llama.rope.freq_base"] == 250000.0
              and abs(md["llama.attention.layer_norm_rms_epsilon"] - 1e-6) < 1e-12
              and len(md["tokenizer.ggml.tokens"]) == 300 and md["tokenizer.ggml.tokens"][3] == "<0x00>"
              and len(md["tokenizer.ggml.scores"]) == 300 and len(md["tokenizer.ggml.token_type"]) == 300)
        t = g.tensors
        ok_t = (t["blk.0.attn_k.weight"]["ne"] == (64, 16) and t["blk.1.ffn_down.weight"]["ne"] == (96, 64)
                and t["token_embd.weight"]["ne"] == (64, 300) and ("output.weight" in t) == (not cfg["tied"])
                and all(i["offset"] % 32 == 0 for i in t.values())
                and g.type_name("blk.0.attn_q.weight") == dtype and g.type_name("blk.0.attn_norm.weight") == "F32")
        m = R.load_model(path)
        ok_m = m.cfg["n_kv_heads"] == 2 and m.cfg["rope_base"] == 250000.0
        suite.check(f"GGUF round trip {dtype}", ok and ok_t and ok_m,
                    f"metadata {ok}, tensors {ok_t}")


def check_third_party_gguf(suite, shared):
    st = os.path.join(shared, "models", "stories260K")
    if not os.path.exists(os.path.join(st, "stories260K.llamacpp.gguf")):
        suite.skip("llama.cpp GGUF vs llama2.c", "shared/ absent")
        return None
    a = R.load_model(os.path.join(st, "model.bin"))
    b = R.load_model(os.path.join(st, "stories260K.llamacpp.gguf"))
    same_cfg = all(a.cfg[k] == b.cfg[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                                  "vocab_size", "n_rot", "rope_base"))
    same_w = (np.array_equal(a.tok_embeddings, b.tok_embeddings) and np.array_equal(a.output, b.output)
              and np.array_equal(a.norm, b.norm)
              and all(np.array_equal(la[k], lb[k]) for la, lb in zip(a.layers, b.layers) for k in la))
    suite.check("llama.cpp GGUF reader: config and every tensor bitwise equal to model.bin", same_cfg and same_w,
                f"config {same_cfg}, weights {same_w}")
    return a


def check_forward_invariants(suite, work):
    # RoPE known answers (theta_0 = 1 rad per position step).
    x = np.zeros((2, 1, 8))
    x[:, 0, 0] = 1.0
    y = R.apply_rope(x, np.array([0, 1]), 10000.0, 8, "norm")
    suite.check("RoPE norm known answer", np.allclose(y[1, 0, :2], [np.cos(1), np.sin(1)]) and np.allclose(y[0], x[0])
                and np.allclose(y[1, 0, 2:], 0), str(np.round(y[1, 0], 4)))
    y = R.apply_rope(x, np.array([0, 1]), 10000.0, 8, "neox")
    suite.check("RoPE neox known answer", np.isclose(y[1, 0, 0], np.cos(1)) and np.isclose(y[1, 0, 4], np.sin(1))
                and np.isclose(y[1, 0, 1], 0), str(np.round(y[1, 0], 4)))
    x = np.zeros((1, 1, 8))
    x[0, 0, 2] = 1.0  # pair 1 (channels 2,3): theta_1 = base^(-2/8)
    y = R.apply_rope(x, np.array([3]), 10000.0, 8, "norm")
    ang = 3 * 10000.0 ** (-0.25)
    suite.check("RoPE norm theta_i = base^(-2i/d)", np.allclose(y[0, 0, 2:4], [np.cos(ang), np.sin(ang)]), "")
    # Llama-3.1 factors divide pair i's angle, linear scaling multiplies every angle.
    y = R.apply_rope(x, np.array([3]), 10000.0, 8, "norm", freq_scale=0.5, freq_factors=[1.0, 4.0, 1.0, 1.0])
    ang = 3 * 0.5 * 10000.0 ** (-0.25) / 4.0
    suite.check("RoPE theta_i * scale / factor_i", np.allclose(y[0, 0, 2:4], [np.cos(ang), np.sin(ang)]), "")
    r = R.rmsnorm(np.array([3.0, 4.0]), np.array([1.0, 2.0]), 0.0)
    suite.check("rmsnorm known answer", np.allclose(r, [3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]), str(r))

    path = os.path.join(work, "inv.gguf")
    R.write_random_gguf(path, dim=64, hidden=96, n_layers=2, n_heads=8, n_kv_heads=2, vocab=300, ctx=64, seed=9)
    m = R.load_model(path)
    toks = [1] + list(np.random.default_rng(3).integers(0, 300, 29))
    full = R.forward(m, toks)
    part = R.forward(m, toks[:13])
    suite.close_check("causality: logits of a prefix do not depend on later tokens",
                      R.rel_max_diff(part, full[:13]), 1e-12)
    # GQA: expanding each kv head to its group of query heads (head h uses kv h // group) changes nothing.
    import copy
    mha = copy.copy(m)
    mha.cfg = dict(m.cfg, n_kv_heads=8)
    hd = m.cfg["head_dim"]
    mha.layers = []
    for lw in m.layers:
        d = dict(lw)
        for k in ("wk", "wv"):
            d[k] = np.repeat(lw[k].reshape(2, hd, -1), 4, axis=0).reshape(8 * hd, -1)
        mha.layers.append(d)
    suite.close_check("GQA == MHA with kv heads repeated per group", R.rel_max_diff(R.forward(mha, toks), full), 1e-12)
    for lw, d in zip(m.layers, mha.layers):
        for k in ("wk", "wv"):
            d[k] = np.tile(lw[k].reshape(2, hd, -1), (4, 1, 1)).reshape(8 * hd, -1)
    suite.far_check("GQA with kv head h % n_kv (wrong) differs", R.rel_max_diff(R.forward(mha, toks), full), 1e-2)


def encode_llama2c(tokenizer_bin, text):
    """Greedy highest-score pair merging over a llama2.c tokenizer.bin vocabulary (BOS + ' ' + text)."""
    with open(tokenizer_bin, "rb") as f:
        b = f.read()
    pos, pieces, scores = 4, [], []
    while pos < len(b):
        sc, n = struct.unpack_from("<fi", b, pos)
        pos += 8
        pieces.append(b[pos:pos + n].decode("utf-8", "replace"))
        scores.append(sc)
        pos += n
    index = {p: i for i, p in enumerate(pieces)}
    ids = []
    for ch in " " + text:
        ids += [index[ch]] if ch in index else [c + 3 for c in ch.encode("utf-8")]
    while True:
        best, at, new = -1e30, -1, -1
        for i in range(len(ids) - 1):
            j = index.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if j is not None and scores[j] > best:
                best, at, new = scores[j], i, j
        if at < 0:
            break
        ids[at:at + 2] = [new]
    return [1] + ids


def check_real_model(suite, shared, model):
    tok = os.path.join(shared, "models", "stories260K", "tokenizer.bin")
    if model is None or not os.path.exists(tok):
        suite.skip("stories260K story perplexity", "shared/ absent")
        return
    t = encode_llama2c(tok, STORY)
    ppl = R.perplexity(model, t, len(t))["ppl"]
    suite.check("stories260K on a TinyStories-style story: ppl < 10", ppl < 10, f"ppl {ppl:.3f} over {len(t)} tokens")
    lg = R.forward(model, t, rope_type="neox")
    lp = R.log_softmax(lg[:-1])
    ppl_neox = float(np.exp(-lp[np.arange(len(t) - 1), t[1:]].mean()))
    suite.check("... and with neox RoPE pairing (wrong) ppl > 3x higher", ppl_neox > 3 * ppl, f"ppl {ppl_neox:.3f}")


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_reference_self")
    work = H.workdir_for(args, "test_reference_self")
    shared = os.path.abspath(args.shared)
    check_quant(suite)
    check_gguf_roundtrip(suite, work)
    model = check_third_party_gguf(suite, shared)
    check_forward_invariants(suite, work)
    check_real_model(suite, shared, model)
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
