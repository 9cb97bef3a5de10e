#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/targets/), written from ../shared files.

Fuzzing works best on small valid inputs, so big shared files are cut down: GGUF vocabularies to
a few hundred tokens and the merges among them, stories260K's GGUF to a one-layer model of width 8,
tokenizer.json to the same few hundred tokens, data files to their first lines. A codebook seed is
written by `cqkv calibrate` when --cqkv is given. Nothing here is committed; the tiny hand-made
seeds of fuzz/seeds/<target>/ are copied in as they are.

  fuzz/make_corpus.py --shared ../shared --out build-asan/fuzz-corpus [--cqkv build-asan/cqkv]
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

# GGUF value types (gguf.h GgufType) and their struct formats.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
          U64: "Q", I64: "q", F64: "d"}
# GGML tensor types the reader knows: (elements per block, bytes per block).
DTYPE_BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 30: (1, 2)}


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("I"), self.take("Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def read_gguf(path):
    """(metadata [(key, type, value)], tensors [(name, ne, type)]) of a GGUF file; data ignored."""
    r = Reader(open(path, "rb").read())
    assert r.d[:4] == b"GGUF", path
    r.p = 4
    r.take("I")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    kv = []
    for _ in range(n_kv):
        key = r.string().decode()
        t = r.take("I")
        kv.append((key, t, r.value(t)))
    tensors = []
    for _ in range(n_tensors):
        name = r.string().decode()
        ne = [r.take("Q") for _ in range(r.take("I"))]
        ttype = r.take("I")
        r.take("Q")
        tensors.append((name, ne, ttype))
    return kv, tensors


def pack_value(t, v):
    if t == STR:
        b = v if isinstance(v, bytes) else v.encode()
        return struct.pack("<Q", len(b)) + b
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(pack_value(et, x) for x in items)
    return struct.pack("<" + SCALAR[t], v)


def write_gguf(path, kv, tensors, alignment=32):
    """kv: [(key, type, value)]; tensors: [(name, ne, type, data bytes)]. GGUF v3."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, t, v in kv:
        out += pack_value(STR, key) + struct.pack("<I", t) + pack_value(t, v)
    offset, blobs = 0, []
    for name, ne, ttype, data in tensors:
        out += pack_value(STR, name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", ttype, offset)
        pad = -len(data) % alignment
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * (-len(out) % alignment)
    with open(path, "wb") as f:
        f.write(out + b"".join(blobs))


def tensor_bytes(ne, ttype, rng):
    n = 1
    for x in ne:
        n *= x
    if ttype == 0:
        return struct.pack("<%df" % n, *[rng.gauss(0, 0.1) for _ in range(n)])
    block, nbytes = DTYPE_BLOCK[ttype]
    return bytes(rng.randrange(256) for _ in range(n // block * nbytes))


def trim_vocab(kv, n_tokens):
    """The metadata with token arrays cut to n_tokens and only merges among the kept tokens."""
    tokens = next(v for k, t, v in kv if k == "tokenizer.ggml.tokens")[1][:n_tokens]
    kept = set(tokens)
    out = []
    for key, t, v in kv:
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            v = (v[0], v[1][:n_tokens])
        elif key == "tokenizer.ggml.merges":
            merges = []
            for m in v[1]:
                a, _, b = m.partition(b" ")
                if a in kept and b in kept and a + b in kept:
                    merges.append(m)
            v = (v[0], merges)
        elif key.startswith("tokenizer.ggml.") and key.endswith("_token_id") and v >= n_tokens:
            v = n_tokens - 1
        out.append((key, t, v))
    return out


def gguf_seeds(shared, out, rng):
    vocab_dir = os.path.join(shared, "tests/tokenizer-vectors")
    stories = os.path.join(shared, "models/stories260K/stories260K.llamacpp.gguf")
    kv, tensors = read_gguf(stories)
    # gguf_vocab: vocabulary-only files of every tokenizer family, a few hundred tokens each.
    write_gguf(os.path.join(out, "gguf_vocab", "stories260K.gguf"),
               [x for x in kv if x[0].startswith(("general.", "tokenizer."))], [])
    for name in sorted(os.listdir(vocab_dir)):
        if name.endswith(".gguf"):
            vkv, _ = read_gguf(os.path.join(vocab_dir, name))
            write_gguf(os.path.join(out, "gguf_vocab", name), trim_vocab(vkv, 400), [])

    # gguf_model: stories260K's metadata and tensor names at width 8, one layer, 2 heads of 4.
    dims = {64: 8, 172: 16, 32: 4, 512: 512}
    override = {"llama.embedding_length": 8, "llama.feed_forward_length": 16,
                "llama.block_count": 1, "llama.attention.head_count": 2,
                "llama.attention.head_count_kv": 1, "llama.rope.dimension_count": 4,
                "llama.context_length": 16}
    mkv = [(k, t, override.get(k, v)) for k, t, v in kv]
    mt = [(n, [dims[x] for x in ne], tt, None) for n, ne, tt in tensors
          if not n.startswith("blk.") or n.startswith("blk.0.")]
    mt = [(n, ne, tt, tensor_bytes(ne, tt, rng)) for n, ne, tt, _ in mt]
    write_gguf(os.path.join(out, "gguf_model", "tiny-llama.gguf"), mkv, mt)

    # gguf: every value type, nested arrays, a custom alignment and tensors of every known type.
    scalars = [("t.u8", U8, 7), ("t.i8", I8, -7), ("t.u16", U16, 700), ("t.i16", I16, -700),
               ("t.u32", U32, 70000), ("t.i32", I32, -70000), ("t.f32", F32, 1.5),
               ("t.bool", BOOL, True), ("t.str", STR, "h\u00e9llo"), ("t.u64", U64, 1 << 40),
               ("t.i64", I64, -(1 << 40)), ("t.f64", F64, 2.25)]
    arrays = [("a." + k[2:], ARR, (t, [v, v])) for k, t, v in scalars]
    nested = [("a.nested", ARR, (ARR, [(I32, [1, 2]), (I32, [3])]))]
    kvs = [("general.architecture", STR, "llama"), ("general.alignment", U32, 64)]
    kvs += scalars + arrays + nested
    ts = [("f32", [4, 2], 0), ("f16", [8], 1), ("q4_0", [32, 2], 2), ("q8_0", [32], 8),
          ("bf16", [2, 2, 2], 30)]
    write_gguf(os.path.join(out, "gguf", "types.gguf"), kvs,
               [(n, ne, t, tensor_bytes(ne, t, rng)) for n, ne, t in ts], alignment=64)
    for src in ("gguf_vocab/stories260K.gguf", "gguf_vocab/ggml-vocab-gpt-2.gguf",
                "gguf_model/tiny-llama.gguf"):
        shutil.copy(os.path.join(out, src), os.path.join(out, "gguf", os.path.basename(src)))


def tokenizer_json_seed(shared, path, n_tokens):
    """smollm2's tokenizer.json with the vocabulary cut to n_tokens and merges among them."""
    j = json.load(open(os.path.join(shared, "tokenizers/smollm2.tokenizer.json")))
    vocab = {k: v for k, v in j["model"]["vocab"].items() if v < n_tokens}
    merges = []
    for m in j["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    j["model"]["vocab"], j["model"]["merges"] = vocab, merges
    j["added_tokens"] = [t for t in j.get("added_tokens", []) if t["id"] < n_tokens]
    with open(path, "w") as f:
        json.dump(j, f, ensure_ascii=False)


def tokenizer_bin_prefix(path, n_tokens):
    """The first n_tokens entries of a llama2.c tokenizer.bin (header int32 max_token_length)."""
    d = open(path, "rb").read()
    p = 4
    for _ in range(n_tokens):
        p += 8 + struct.unpack_from("<i", d, p + 4)[0]
    return d[:p]


def first_lines(path, n):
    with open(path, "rb") as f:
        return b"".join(f.readline() for _ in range(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cqkv", help="cqkv binary, to write a codebook seed with `cqkv calibrate`")
    a = ap.parse_args()
    if not os.path.isdir(a.shared):
        sys.exit(f"make_corpus: shared folder {a.shared} absent")
    rng = random.Random(1234)
    targets = ["gguf", "gguf_vocab", "gguf_model", "llama2c", "tokenizer_bin", "tokenizer_json",
               "codebook", "kv_spec", "data_spec", "openai_request", "tokenize_text"]
    for t in targets:
        os.makedirs(os.path.join(a.out, t), exist_ok=True)
    sh = lambda rel: os.path.join(a.shared, rel)  # noqa: E731

    def put(target, name, data):
        with open(os.path.join(a.out, target, name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    gguf_seeds(a.shared, a.out, rng)
    tokenizer_json_seed(a.shared, os.path.join(a.out, "tokenizer_json", "smollm2-400.json"), 400)
    stories_tok = open(sh("models/stories260K/tokenizer.bin"), "rb").read()
    put("tokenizer_bin", "stories260K.bin", stories_tok)
    put("tokenizer_bin", "llama2-600.bin",
        tokenizer_bin_prefix(sh("tokenizers/llama2.tokenizer.bin"), 600))

    # llama2.c: a header (dim, hidden, layers, heads, kv heads, vocab, seq; negative vocab means
    # an unshared classifier) and random weights at width 8, as the checkpoint reader expects.
    for name, vocab in (("shared-classifier.bin", 32), ("own-classifier.bin", -32)):
        dim, hidden, layers, heads, kv_heads, seq = 8, 16, 1, 2, 1, 16
        v, hd = abs(vocab), dim // heads
        n = v * dim + layers * (dim + dim * dim + 2 * dim * kv_heads * hd + dim * dim + dim
                                + 3 * dim * hidden) + dim + seq * hd
        n += v * dim if vocab < 0 else 0
        w = struct.pack("<%df" % n, *[rng.gauss(0, 0.1) for _ in range(n)])
        header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq)
        put("llama2c", name, header + w)

    # tokenize_text: llama.cpp's tokenizer test texts, each for one of the six vocabularies
    # (first byte, fuzz_entries.cc TokenizeText), half of them with BOS.
    texts = set()
    vdir = sh("tests/tokenizer-vectors")
    for name in sorted(os.listdir(vdir)):
        if name.endswith(".inp"):
            data = open(os.path.join(vdir, name), "rb").read()
            texts.update(data.split(b"\n__ggml_vocab_test__\n"))
    for i, text in enumerate(sorted(texts)):
        put("tokenize_text", f"{i:03d}", bytes([(i % 6) | (0x80 if i % 2 else 0)]) + text)

    for i, spec in enumerate(["fp32", "fp16", "cq:book.cqcb", "cq:a:b.cqcb:r32", "int4-token:g64",
                              "int2-channel:g128", "nf4", "nf3-token:g32", "kivi2:r128",
                              "kivi4:g32:r0", "int8", "int4-token:hadamard:g64",
                              "int2-channel:hadamard", "tq3", "tq4:qjl", "cq:b.cqcb:fs:r32",
                              "int2-token;fp16@first1,last1", "K=int4-token,V=tq2",
                              "cq:a.cqcb:r32;fp16@0-1,31", "nf4;K=fp16,V=int2-token@last2"]):
        put("kv_spec", f"{i:02d}", spec)

    wiki = first_lines(sh("data/wikitext-2/wiki.test.raw"), 6)
    c4 = b"".join(json.dumps({"text": json.loads(line)["text"][:160], "id": i}).encode() + b"\n"
                  for i, line in enumerate(first_lines(sh("data/c4/c4_validation_1900.jsonl"), 3)
                                           .splitlines()))
    put("data_spec", "wiki", b"wiki.test.raw\n" + wiki)
    put("data_spec", "c4-range", b"c4.jsonl:1:3\n" + c4)
    put("data_spec", "c4-open", b"c4.jsonl:1:\n" + c4)
    put("data_spec", "c4-all", b"c4.jsonl\n" + c4)

    # openai_request: first byte even = completions, odd = chat.
    put("openai_request", "completion", b"\0" + json.dumps(
        {"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.7,
         "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 42, "stop": ["\n", "The end"],
         "stream": True, "stream_options": {"include_usage": True}, "n": 1, "echo": False,
         "ignore_eos": False}).encode())
    put("openai_request", "completion-tokens", b"\0" + json.dumps(
        {"prompt": [1, 403, 407], "max_tokens": 4, "seed": 18446744073709551615}).encode())
    put("openai_request", "chat", b"\1" + json.dumps(
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi \u00e9\u65e5"},
                                    {"role": "assistant", "content": None},
                                    {"role": "user", "content": [{"type": "text", "text": "a"}]}],
         "max_completion_tokens": 16, "stop": "x", "stream": False}).encode())

    if a.cqkv:
        # Codebook seeds of every kind the format records: k-means (version 2), additive and
        # residual value bases (quant/additive_codebook.h, residual_codebook.h), rope-comm keys
        # (version 3, quant/rope_comm.h).
        kinds = [("", []), ("-additive", ["--values", "additive"]),
                 ("-residual", ["--values", "residual"]),
                 ("-ropecomm", ["--fisher", "--keys", "rope-comm"])]
        with tempfile.TemporaryDirectory() as tmp:
            for suffix, extra in kinds:
                book = os.path.join(tmp, "stories260K-2c2b" + suffix + ".cqcb")
                subprocess.run([a.cqkv, "calibrate", "-q", "-t", "1",
                                "-m", sh("models/stories260K/model.bin"),
                                "--data", sh("data/c4/c4_validation_1900.jsonl") + ":0:4",
                                "--config", "2c2b", "--tokens", "2x32", "--iters", "5",
                                *extra, "-o", book],
                               check=True, stdout=subprocess.DEVNULL)
                shutil.copy(book, os.path.join(a.out, "codebook"))

    # Hand-made seeds committed beside this script.
    seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
    for t in targets:
        d = os.path.join(seeds, t)
        if os.path.isdir(d):
            for name in os.listdir(d):
                shutil.copy(os.path.join(d, name), os.path.join(a.out, t, name))
    for t in targets:
        files = os.listdir(os.path.join(a.out, t))
        size = sum(os.path.getsize(os.path.join(a.out, t, f)) for f in files)
        print(f"make_corpus: {t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
