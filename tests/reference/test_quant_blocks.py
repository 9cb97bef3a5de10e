#!/usr/bin/env python3
"""cqkv's dequantised block-format tensors against the independent NumPy dequantiser (quant_blocks_ref.py).

Contract used:
    CQKV dump-tensor --model F.gguf --name T --out OUT [--ref]
        writes tensor T widened to fp32 by cqkv's vector kernels (--ref: its scalar reference) as
        n_elements little-endian floats in GGUF row order.

Checks:
  1. Every tensor of the llama.cpp-written K-quant files shared/models/cq-tiny/cq-tiny.Q4_K_M.gguf and
     cq-tiny.Q2_K.gguf (types Q2_K, Q3_K, Q4_K, Q6_K, plus F16/F32), vector kernels.
  2. Every block format (including Q5_K, Q4_1, Q5_0, Q5_1, IQ4_NL, absent from those files) on random bytes
     with finite random fp16 scales (some negative, some subnormal), written here into a GGUF, through both
     the vector kernels and the scalar reference.
Tolerance: |cqkv - ref| <= 2^-24 |ref| per element. The reference is exact (float64 of small integers times
fp16 scales); cqkv rounds each element once to fp32 (scale * q is exact in fp32, the offset added with one
rounding), so anything beyond half an fp32 ulp is a decoding error, not arithmetic.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402  (re-executes under an interpreter with numpy when needed)
import harness as H  # noqa: E402
import numpy as np  # noqa: E402
import quant_blocks_ref as Q  # noqa: E402

REL_TOL = 2.0 ** -24
SCALE_OFFSETS = {Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q5_1: (0, 2), Q.IQ4_NL: (0,), Q.Q2_K: (80, 82),
                 Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def dump(cq, model, name, out, ref=False):
    if os.path.exists(out):
        os.remove(out)
    cq.run(["dump-tensor", "--model", model, "--name", name, "--out", out] + (["--ref"] if ref else []))
    return np.fromfile(out, dtype="<f4").astype(np.float64)


def compare(suite, label, got, want):
    if got.shape != want.shape:
        return suite.fail(label, f"{got.size} values, expected {want.size}")
    excess = np.abs(got - want) - REL_TOL * np.abs(want)
    worst = int(np.argmax(excess))
    return suite.check(label, excess[worst] <= 0,
                       f"{want.size} values; worst element {worst}: cqkv {got[worst]!r} vs ref {want[worst]!r}")


def random_blocks(t, n_blocks, rng):
    be, bb = Q.BLOCK[t]
    b = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    for j, off in enumerate(SCALE_OFFSETS[t]):
        h = rng.uniform(-0.1, 0.1, size=n_blocks).astype(np.float16)
        if j == 0:
            h[1] = np.frombuffer(struct.pack("<H", 0x8005), dtype=np.float16)[0]  # a subnormal scale
        b[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return b.reshape(-1)


def write_raw_gguf(path, tensors):
    """tensors: list of (name, ne, ggml_type, raw bytes). GGUF v3, no metadata, alignment 32."""
    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), 0)]
    offset, blobs = 0, []
    for name, ne, t, raw in tensors:
        nb = name.encode()
        head.append(struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                    + struct.pack("<IQ", t, offset))
        pad = -len(raw) % 32
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = b"".join(head)
    with open(path, "wb") as f:
        f.write(header + b"\0" * (-len(header) % 32))
        for blob in blobs:
            f.write(blob)


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_quant_blocks")
    work = H.workdir_for(args, "test_quant_blocks")
    cq = H.Cqkv(args.cqkv, args.timeout)
    if not cq.available:
        suite.skip("all", cq.missing_reason())
        return suite.finish()
    out = os.path.join(work, "tensor.f32")

    # 2. Synthetic rows of every block format: 3 rows of 2 blocks (and 1 row of 5 blocks).
    rng = np.random.default_rng(5)
    tensors, expected = [], {}
    for t in SCALE_OFFSETS:
        be, _ = Q.BLOCK[t]
        for rows, blocks in ((3, 2), (1, 5)):
            raw = random_blocks(t, rows * blocks, rng)
            name = f"{Q.TYPE_NAME[t]}.{rows}x{blocks}"
            tensors.append((name, (be * blocks, rows), t, raw.tobytes()))
            expected[name] = Q.dequantize(raw, t, rows * blocks * be)
    synth = os.path.join(work, "blocks.gguf")
    write_raw_gguf(synth, tensors)
    for name, want in expected.items():
        for ref in (False, True):
            compare(suite, f"synthetic {name} {'scalar reference' if ref else 'vector'}",
                    dump(cq, synth, name, out, ref), want)

    # 1. The real K-quant files written by llama.cpp.
    for fname in ("cq-tiny.Q4_K_M.gguf", "cq-tiny.Q2_K.gguf"):
        path = H.shared_path(args, "models", "cq-tiny", fname)
        if not os.path.exists(path):
            suite.skip(fname, f"{path} absent")
            continue
        g = R.GGUFFile(path)
        seen = {}
        for name, info in g.tensors.items():
            want = Q.dequantize(Q.tensor_bytes(g, name), info["type"], info["n"])
            seen[Q.TYPE_NAME[info["type"]]] = seen.get(Q.TYPE_NAME[info["type"]], 0) + 1
            compare(suite, f"{fname} {name} ({Q.TYPE_NAME[info['type']]})", dump(cq, path, name, out), want)
        print(f"{fname}: tensor types {seen}")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
