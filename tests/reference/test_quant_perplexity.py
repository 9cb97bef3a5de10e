#!/usr/bin/env python3
"""`cqkv perplexity --protocol llama.cpp` on llama.cpp's K-quant GGUFs of cq-tiny against a float64 NumPy
forward pass (llama_ref.py) over the same weights, dequantised by quant_blocks_ref.py.

Contracts used:
    CQKV tokenize --model M --text-file F                      JSON array of ids, BOS first
    CQKV perplexity --model M --data F --ctx 128 --protocol llama.cpp --chunks K --json OUT
        JSON with ppl, nll, tokens, windows, ctx and protocol = "llama.cpp"

Protocol (llama.cpp's tools/perplexity, written out here independently): the token stream is cut into
chunks of 128 tokens; each chunk's first token is replaced by BOS (id 1: these vocabularies add BOS); the
model runs on the chunk from an empty cache and only the predictions of tokens 65..127 count.
Text: the first 3000 characters of WikiText-2 test; 3 chunks. Models: cq-tiny.Q4_K_M.gguf and
cq-tiny.Q2_K.gguf (K-quant weights, F16 ffn_down), and the F32 llama2.c checkpoint with its tokenizer.
Tolerance: ppl within 1e-4 relative (fp32 engine vs float64 reference, as test_perplexity.py).
Full-size figures against llama.cpp's own (100 chunks): eval/llamacpp_ppl.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402
import numpy as np  # noqa: E402
import quant_blocks_ref as Q  # noqa: E402

CTX, CHUNKS, N_CHARS, TOL, BOS = 128, 3, 3000, 1e-4, 1


def teach_reference_block_formats():
    """Let llama_ref's GGUF reader size and dequantise the block formats through quant_blocks_ref."""
    for t in (Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.IQ4_NL, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        R.GGML_BLOCK.setdefault(t, Q.BLOCK[t])
        R.GGML_TYPE_NAME.setdefault(t, Q.TYPE_NAME[t])
    plain = R.dequantize

    def dequantize(raw, ggml_type, n):
        if ggml_type in (Q.F32, Q.F16, Q.Q8_0) or ggml_type not in Q.BLOCK:
            return plain(raw, ggml_type, n)
        return Q.dequantize(raw, ggml_type, n)

    R.dequantize = dequantize


def llama_cpp_ppl(model, tokens):
    nll = []
    for c in range(CHUNKS):
        seg = np.asarray(tokens[c * CTX:(c + 1) * CTX], dtype=np.int64).copy()
        seg[0] = BOS
        lp = R.log_softmax(R.forward(model, seg[:-1]))
        pos = np.arange(CTX // 2, CTX - 1)
        nll.append(-lp[pos, seg[pos + 1]])
    nll = np.concatenate(nll)
    return float(np.exp(nll.mean())), nll.size


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_quant_perplexity")
    work = H.workdir_for(args, "test_quant_perplexity")
    tiny = H.shared_path(args, "models", "cq-tiny")
    wiki = H.shared_path(args, "data", "wikitext-2", "wiki.test.raw")
    tok_bin = H.shared_path(args, "tokenizers", "llama2.tokenizer.bin")
    models = {"Q4_K_M": (os.path.join(tiny, "cq-tiny.Q4_K_M.gguf"), []),
              "Q2_K": (os.path.join(tiny, "cq-tiny.Q2_K.gguf"), []),
              "F32 model.bin": (os.path.join(tiny, "model.bin"), ["--tokenizer", tok_bin])}
    missing = [p for p, _ in models.values() if not os.path.exists(p)] + [p for p in (wiki, tok_bin)
                                                                         if not os.path.exists(p)]
    if missing:
        suite.skip("all", f"shared files absent: {missing}")
        return suite.finish()
    cq = H.Cqkv(args.cqkv, args.timeout)
    if not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        return suite.finish()
    teach_reference_block_formats()

    with open(wiki, encoding="utf-8") as f:
        text = f.read()[:N_CHARS]
    text_file = os.path.join(work, "wiki_test_3000.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(text)

    for name, (path, extra) in models.items():
        try:
            tokens = cq.tokenize(path, text_file, extra)
            out = os.path.join(work, "ppl.json")
            r = cq.perplexity(path, text_file, CTX, out, extra=["--protocol", "llama.cpp", "--chunks", CHUNKS,
                                                                 *extra])
        except H.CqkvError as e:
            suite.fail(f"cqkv {name}", str(e))
            continue
        if not suite.check(f"{name}: enough tokens", len(tokens) >= CHUNKS * CTX and tokens[0] == BOS,
                           f"{len(tokens)} ids, first {tokens[:3]}"):
            continue
        ref_ppl, n_scored = llama_cpp_ppl(R.load_model(path), tokens)
        suite.check(f"{name}: JSON records the protocol and the scored count",
                    r.get("protocol") == "llama.cpp" and r["tokens"] == n_scored and r["windows"] == CHUNKS,
                    f"protocol {r.get('protocol')!r}, tokens {r['tokens']} (ref {n_scored}), windows {r['windows']}")
        suite.close_check(f"{name}: ppl {r['ppl']:.6f} vs NumPy reference {ref_ppl:.6f}",
                          abs(r["ppl"] / ref_ppl - 1), TOL, "rel diff")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
