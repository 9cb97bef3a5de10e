#!/usr/bin/env python3
"""Independent float64 NumPy reference for LLaMA-architecture inference: the oracle cqkv is tested against.

Written from the math and the published file formats (llama2.c legacy checkpoint, GGUF v2/v3, ggml's
Q8_0/Q4_0 block layouts); it shares no code with the C++ engine. GGUF architectures: `llama` (optional
Llama-3.1 rope_freqs.weight, linear RoPE scaling), `qwen2` (Q/K/V biases, NEOX RoPE), `qwen3` (per-head Q/K
RMSNorm, explicit key_length), as llama.cpp defines them. Everything is computed in float64 from
the exact stored fp32/fp16/bf16/quantised values, so any difference from the engine is the engine's.

Library:
    load_model(path)                -> LlamaModel (llama2.c .bin or GGUF, detected by magic)
    forward(model, tokens, ...)     -> logits, float64 (n_tokens, vocab)
    perplexity(model, tokens, ctx)  -> dict(ppl, nll, tokens, windows, ctx, ...)
    write_random_gguf(path, ...)    -> writes a small random GGUF v3 llama model
    GGUFFile(path)                  -> minimal GGUF reader (metadata + dequantised tensors)

CLI (python3 llama_ref.py -h):
    info         --model M
    logits       --model M --tokens 1,5,9 --out FILE [--rope norm|neox] [--rope-base B]
    compare      --model M --tokens 1,5,9 --logits FILE      (checks a raw fp32 logits dump)
    perplexity   --model M (--tokens-json F | --tokens ...) --ctx N [--max-windows K] [--json OUT]
    write-random --out F [--dim ..] [--dtype F32|F16|BF16|Q8_0|Q4_0] [--tied] [--seed S]
                 [--arch llama|qwen2|qwen3] [--head-dim D] [--rope-freqs] [--rope-scale F]
"""
import os
import sys


def _ensure_numpy():
    """CTest calls plain `python3`, which may be an interpreter without numpy (e.g. pyenv's).
    Re-execute the running script (the test or this CLI) under /usr/bin/python3, which has it."""
    try:
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    alt = "/usr/bin/python3"
    if (os.path.exists(alt) and not os.environ.get("CQKV_REF_REEXEC")
            and os.path.realpath(sys.executable) != os.path.realpath(alt) and sys.argv and sys.argv[0]):
        os.environ["CQKV_REF_REEXEC"] = "1"
        sys.stderr.write(f"[llama_ref] numpy missing in {sys.executable}; re-running under {alt}\n")
        sys.stderr.flush()
        os.execv(alt, [alt] + sys.argv)
    sys.stderr.write(f"[llama_ref] ERROR: numpy is not importable by {sys.executable} (nor by {alt}). "
                     "Install python3-numpy.\n")
    sys.exit(2)


_ensure_numpy()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# GGML tensor types (ggml.h numbering) and their block geometry: (elements per block, bytes per block)
# ----------------------------------------------------------------------------------------------------
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
GGML_TYPE_NAME = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q4_0: "Q4_0", GGML_Q8_0: "Q8_0", GGML_BF16: "BF16"}
GGML_TYPE_BY_NAME = {v: k for k, v in GGML_TYPE_NAME.items()}
GGML_BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q8_0: (32, 34), GGML_Q4_0: (32, 18)}
# llama_ftype ("general.file_type") for files whose matrices are all of one type.
LLAMA_FTYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "BF16": 32}

# Q8_0 block: fp16 scale d, then 32 int8 quants; value = d * q.
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
# Q4_0 block: fp16 scale d, then 16 bytes; element j<16 = low nibble of byte j, element j+16 = high
# nibble of byte j; value = d * (nibble - 8).
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
assert Q8_0_BLOCK.itemsize == 34 and Q4_0_BLOCK.itemsize == 18

# GGUF metadata value types.
GGUF_UINT8, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32 = 0, 1, 2, 3, 4, 5
GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64, GGUF_FLOAT64 = 6, 7, 8, 9, 10, 11, 12
_GGUF_SCALAR_FMT = {GGUF_UINT8: "B", GGUF_INT8: "b", GGUF_UINT16: "H", GGUF_INT16: "h", GGUF_UINT32: "I",
                    GGUF_INT32: "i", GGUF_FLOAT32: "f", GGUF_BOOL: "?", GGUF_UINT64: "Q", GGUF_INT64: "q",
                    GGUF_FLOAT64: "d"}
_GGUF_NP = {GGUF_UINT8: "u1", GGUF_INT8: "i1", GGUF_UINT16: "<u2", GGUF_INT16: "<i2", GGUF_UINT32: "<u4",
            GGUF_INT32: "<i4", GGUF_FLOAT32: "<f4", GGUF_BOOL: "u1", GGUF_UINT64: "<u8", GGUF_INT64: "<i8",
            GGUF_FLOAT64: "<f8"}
GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32


class RefError(Exception):
    """A user-facing error (bad file, bad argument) with a clear message."""


# ----------------------------------------------------------------------------------------------------
# Dequantisation (exact: every product below is exactly representable in fp32)
# ----------------------------------------------------------------------------------------------------
def dequantize(raw, ggml_type, n_elements):
    """raw: uint8 array holding exactly the tensor's bytes -> float32 flat array of n_elements."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if ggml_type not in GGML_BLOCK:
        raise RefError(f"unsupported GGML tensor type {ggml_type} (supported: {sorted(GGML_TYPE_NAME.values())})")
    blk_elems, blk_bytes = GGML_BLOCK[ggml_type]
    if n_elements % blk_elems:
        raise RefError(f"{n_elements} elements is not a whole number of {GGML_TYPE_NAME[ggml_type]} blocks")
    expect = n_elements // blk_elems * blk_bytes
    if raw.size != expect:
        raise RefError(f"tensor byte size {raw.size} != expected {expect} for {GGML_TYPE_NAME[ggml_type]}")
    if ggml_type == GGML_F32:
        return raw.view("<f4").astype(np.float32)
    if ggml_type == GGML_F16:
        return raw.view("<f2").astype(np.float32)
    if ggml_type == GGML_BF16:
        return (raw.view("<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
    if ggml_type == GGML_Q8_0:
        b = raw.view(Q8_0_BLOCK)
        return (b["d"].astype(np.float32)[:, None] * b["qs"].astype(np.float32)).reshape(-1)
    if ggml_type == GGML_Q4_0:
        b = raw.view(Q4_0_BLOCK)
        qs = b["qs"]
        nib = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # (nblocks, 32)
        return (b["d"].astype(np.float32)[:, None] * nib).reshape(-1)
    raise AssertionError


# ----------------------------------------------------------------------------------------------------
# Quantisation, following ggml's reference (scalar) quantisers' rounding
# ----------------------------------------------------------------------------------------------------
def _round_half_away(v):
    """C roundf(): round half away from zero (numpy's round is half-to-even). Done in float64."""
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_q8_0(x):
    """x: float32 array with size % 32 == 0 (blocks along the contiguous dim) -> bytes."""
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = _round_half_away(b * inv[:, None])
    out = np.empty(b.shape[0], dtype=Q8_0_BLOCK)
    out["d"] = d.astype(np.float16)
    out["qs"] = np.clip(q, -127, 127).astype(np.int8)
    return out.tobytes()


def quantize_q4_0(x):
    """x: float32 array with size % 32 == 0 -> bytes. d = (signed value of max |x|) / -8,
    q = min(15, trunc(x/d + 8.5))."""
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    idx = np.argmax(np.abs(b), axis=1)  # first index of the maximum magnitude
    mx = b[np.arange(b.shape[0]), idx]
    d = (mx / np.float32(-8.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    v = (b * inv[:, None] + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(v).astype(np.int32))
    q = np.clip(q, 0, 15).astype(np.uint8)
    out = np.empty(b.shape[0], dtype=Q4_0_BLOCK)
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def to_bf16_bits(x):
    """fp32 -> bf16 bit patterns, round to nearest even (no NaNs expected)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def encode_tensor(x, type_name):
    """float array in numpy (row-major) layout -> raw bytes for GGML type `type_name`."""
    x = np.asarray(x, dtype=np.float32)
    if type_name == "F32":
        return x.astype("<f4").tobytes()
    if type_name == "F16":
        return x.astype("<f2").tobytes()
    if type_name == "BF16":
        return to_bf16_bits(x).astype("<u2").tobytes()
    if type_name in ("Q8_0", "Q4_0"):
        if x.shape[-1] % 32:
            raise RefError(f"{type_name} needs the contiguous dim to be a multiple of 32, got {x.shape}")
        return quantize_q8_0(x) if type_name == "Q8_0" else quantize_q4_0(x)
    raise RefError(f"unknown dtype {type_name!r}")


# ----------------------------------------------------------------------------------------------------
# GGUF reader
# ----------------------------------------------------------------------------------------------------
class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt):
        fmt = "<" + fmt
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise RefError(f"{self.path}: truncated GGUF header at byte {self.pos}")
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v if len(v) > 1 else v[0]

    def string(self):
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise RefError(f"{self.path}: truncated GGUF string at byte {self.pos}")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == GGUF_STRING:
            return self.string()
        if vtype == GGUF_ARRAY:
            etype, count = self.take("I"), self.take("Q")
            if etype in _GGUF_NP:
                dt = np.dtype(_GGUF_NP[etype])
                end = self.pos + count * dt.itemsize
                if end > len(self.buf):
                    raise RefError(f"{self.path}: truncated GGUF array at byte {self.pos}")
                arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).copy()
                self.pos = end
                return arr.astype(bool) if etype == GGUF_BOOL else arr
            return [self.value(etype) for _ in range(count)]
        if vtype in _GGUF_SCALAR_FMT:
            return self.take(_GGUF_SCALAR_FMT[vtype])
        raise RefError(f"{self.path}: unknown GGUF metadata value type {vtype} at byte {self.pos}")


class GGUFFile:
    """Minimal GGUF v2/v3 reader. metadata: dict key -> value; tensors: dict name -> info dict
    {type, ne (GGML order, ne[0] contiguous), shape (numpy order = reversed ne), offset (absolute)}."""

    def __init__(self, path):
        self.path = path
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        buf = memoryview(self.mm)
        if bytes(buf[:4]) != GGUF_MAGIC:
            raise RefError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
        c = _Cursor(buf, path)
        c.pos = 4
        self.version = c.take("I")
        if self.version not in (2, 3):
            raise RefError(f"{path}: GGUF version {self.version} not supported (only 2 and 3)")
        n_tensors, n_kv = c.take("Q"), c.take("Q")
        self.metadata = {}
        for _ in range(n_kv):
            key = c.string()
            self.metadata[key] = c.value(c.take("I"))
        self.alignment = int(self.metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT))
        infos = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.take("I")
            ne = tuple(int(c.take("Q")) for _ in range(n_dims))
            ttype = c.take("I")
            off = c.take("Q")
            infos.append((name, ne, ttype, off))
        self.data_offset = -(-c.pos // self.alignment) * self.alignment
        self.tensors = {}
        for name, ne, ttype, off in infos:
            n = int(np.prod(ne)) if ne else 1
            nbytes = None
            if ttype in GGML_BLOCK:
                be, bb = GGML_BLOCK[ttype]
                nbytes = n // be * bb
                if self.data_offset + off + nbytes > self.mm.size:
                    raise RefError(f"{path}: tensor {name} runs past the end of the file")
            self.tensors[name] = dict(type=ttype, ne=ne, shape=tuple(reversed(ne)), n=n,
                                      offset=self.data_offset + off, nbytes=nbytes)

    def type_name(self, name):
        t = self.tensors[name]["type"]
        return GGML_TYPE_NAME.get(t, f"type{t}")

    def raw(self, name):
        info = self.tensors[name]
        if info["nbytes"] is None:
            raise RefError(f"{self.path}: tensor {name} has unsupported GGML type {info['type']}")
        return self.mm[info["offset"]:info["offset"] + info["nbytes"]]

    def tensor(self, name):
        """Dequantised float32 array in numpy order (shape = reversed ne): a matrix (out,in) has ne=[in,out]."""
        if name not in self.tensors:
            raise RefError(f"{self.path}: tensor {name!r} not found")
        info = self.tensors[name]
        return dequantize(self.raw(name), info["type"], info["n"]).reshape(info["shape"])


# ----------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------
class LlamaModel:
    """cfg: dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len, rope_base,
    n_rot, norm_eps, rope_type ('norm' = pairs (2i, 2i+1); 'neox' = pairs (i, i + n_rot/2)), and optionally
    rope_freq_scale (linear scaling, theta * scale) and rope_freq_factors (n_rot/2 divisors, Llama-3.1).
    Weights are float64 with shapes:
        tok_embeddings (vocab, dim); norm (dim,); output (vocab, dim)
        layers[l]: attn_norm (dim,), wq (n_heads*hd, dim), wk (n_kv*hd, dim), wv (n_kv*hd, dim),
                   wo (dim, n_heads*hd), ffn_norm (dim,), w1 (hidden, dim), w2 (dim, hidden), w3 (hidden, dim)
                   optional: bq (n_heads*hd,), bk, bv (n_kv*hd,) biases; q_norm, k_norm (hd,) per-head norms
    """

    def __init__(self, cfg, tok_embeddings, layers, norm, output, source="", extra=None):
        self.cfg, self.tok_embeddings, self.layers, self.norm, self.output = cfg, tok_embeddings, layers, norm, output
        self.source = source
        self.extra = extra or {}
        self._check()

    def _check(self):
        c = self.cfg
        d, hd, H, KV, F, V = c["dim"], c["head_dim"], c["n_heads"], c["n_kv_heads"], c["hidden_dim"], c["vocab_size"]
        if H % KV:
            raise RefError(f"{self.source}: n_heads {H} not a multiple of n_kv_heads {KV}")
        if c["n_rot"] % 2 or c["n_rot"] > hd:
            raise RefError(f"{self.source}: bad rope dimension count {c['n_rot']} for head_dim {hd}")
        want = dict(tok_embeddings=(V, d), norm=(d,), output=(V, d))
        for k, shp in want.items():
            if getattr(self, k).shape != shp:
                raise RefError(f"{self.source}: {k} has shape {getattr(self, k).shape}, expected {shp}")
        lw = dict(attn_norm=(d,), wq=(H * hd, d), wk=(KV * hd, d), wv=(KV * hd, d), wo=(d, H * hd),
                  ffn_norm=(d,), w1=(F, d), w2=(d, F), w3=(F, d))
        if len(self.layers) != c["n_layers"]:
            raise RefError(f"{self.source}: {len(self.layers)} layers loaded, expected {c['n_layers']}")
        for i, layer in enumerate(self.layers):
            for k, shp in lw.items():
                if layer[k].shape != shp:
                    raise RefError(f"{self.source}: layer {i} {k} has shape {layer[k].shape}, expected {shp}")


def load_llama2c(path):
    """llama2.c legacy (v0) checkpoint: 7 int32 header then fp32 arrays (see module docstring of run.c)."""
    with open(path, "rb") as f:
        head = f.read(28)
    if len(head) < 28:
        raise RefError(f"{path}: too short for a llama2.c header")
    if struct.unpack_from("<I", head)[0] == 0x616B3432:
        raise RefError(f"{path}: llama2.c v1/v2 'ak42' export format is not supported (legacy v0 only)")
    dim, hidden, L, H, KV, vocab, seq = struct.unpack("<7i", head)
    shared = vocab > 0
    V = abs(vocab)
    if min(dim, hidden, L, H, KV, V, seq) <= 0 or dim % H:
        raise RefError(f"{path}: implausible llama2.c header {(dim, hidden, L, H, KV, vocab, seq)}")
    hd = dim // H
    data = np.memmap(path, dtype="<f4", mode="r", offset=28)
    pos = [0]

    def take(*shape):
        n = int(np.prod(shape))
        if pos[0] + n > data.size:
            raise RefError(f"{path}: file too short for the header's shapes")
        a = np.asarray(data[pos[0]:pos[0] + n], dtype=np.float64).reshape(shape)
        pos[0] += n
        return a

    emb = take(V, dim)
    rms_att = take(L, dim)
    wq = take(L, H * hd, dim)
    wk = take(L, KV * hd, dim)
    wv = take(L, KV * hd, dim)
    wo = take(L, dim, H * hd)
    rms_ffn = take(L, dim)
    w1 = take(L, hidden, dim)
    w2 = take(L, dim, hidden)
    w3 = take(L, hidden, dim)
    rms_final = take(dim)
    take(seq, hd // 2)  # freq_cis_real (unused: recomputed from theta)
    take(seq, hd // 2)  # freq_cis_imag
    wcls = emb if shared else take(V, dim)
    if pos[0] != data.size:
        raise RefError(f"{path}: {data.size - pos[0]} trailing floats after the expected weights "
                       f"(header {(dim, hidden, L, H, KV, vocab, seq)})")
    layers = [dict(attn_norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l], ffn_norm=rms_ffn[l],
                   w1=w1[l], w2=w2[l], w3=w3[l]) for l in range(L)]
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=L, n_heads=H, n_kv_heads=KV, head_dim=hd, vocab_size=V,
               seq_len=seq, rope_base=10000.0, n_rot=hd, norm_eps=1e-5, rope_type="norm", format="llama2c",
               shared_classifier=shared)
    return LlamaModel(cfg, emb, layers, rms_final, wcls, source=path)


GGUF_ARCHS = {"llama": "norm", "qwen2": "neox", "qwen3": "neox"}  # architecture -> RoPE pairing


def load_gguf(path):
    g = GGUFFile(path)
    md = g.metadata
    arch = md.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise RefError(f"{path}: general.architecture is {arch!r}; supported: {sorted(GGUF_ARCHS)}")

    def key(name, default=None):
        k = f"{arch}.{name}"
        if k in md:
            return md[k]
        if default is None:
            raise RefError(f"{path}: required metadata key {k!r} missing")
        return default

    dim = int(key("embedding_length"))
    hidden = int(key("feed_forward_length"))
    L = int(key("block_count"))
    H = int(key("attention.head_count"))
    KV = int(key("attention.head_count_kv", H))
    hd = int(key("attention.key_length", dim // H))
    if int(key("attention.value_length", hd)) != hd:
        raise RefError(f"{path}: value_length differs from key_length")
    n_rot = int(key("rope.dimension_count", hd))
    base = float(key("rope.freq_base", 10000.0))
    eps = float(key("attention.layer_norm_rms_epsilon", 1e-5))
    seq = int(key("context_length", 2048))
    scaling = key("rope.scaling.type", "linear")
    if scaling not in ("linear", "none"):
        raise RefError(f"{path}: rope scaling {scaling!r} is not supported")
    factor = float(key("rope.scaling.factor", 0.0))
    freq_scale = 1.0 if scaling == "none" or factor == 0.0 else 1.0 / factor
    used = set()

    def t(name):
        used.add(name)
        return g.tensor(name).astype(np.float64)

    def opt(name):
        return t(name) if name in g.tensors else None

    emb = t("token_embd.weight")
    V = emb.shape[0]
    tied = "output.weight" not in g.tensors
    out = emb if tied else t("output.weight")
    factors = opt("rope_freqs.weight") if arch == "llama" else None
    layers = []
    for l in range(L):
        p = f"blk.{l}."
        lw = dict(attn_norm=t(p + "attn_norm.weight"), wq=t(p + "attn_q.weight"), wk=t(p + "attn_k.weight"),
                  wv=t(p + "attn_v.weight"), wo=t(p + "attn_output.weight"),
                  ffn_norm=t(p + "ffn_norm.weight"), w1=t(p + "ffn_gate.weight"),
                  w2=t(p + "ffn_down.weight"), w3=t(p + "ffn_up.weight"),
                  bq=opt(p + "attn_q.bias"), bk=opt(p + "attn_k.bias"), bv=opt(p + "attn_v.bias"))
        if arch == "qwen3":
            lw.update(q_norm=t(p + "attn_q_norm.weight"), k_norm=t(p + "attn_k_norm.weight"))
        layers.append(lw)
    unused = sorted(set(g.tensors) - used - {"output_norm.weight"})
    if unused:
        raise RefError(f"{path}: tensors not used by a {arch} model: {unused[:5]}")
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=L, n_heads=H, n_kv_heads=KV, head_dim=hd, vocab_size=V,
               seq_len=seq, rope_base=base, n_rot=n_rot, norm_eps=eps, rope_type=GGUF_ARCHS[arch], format="gguf",
               arch=arch, rope_freq_scale=freq_scale, rope_freq_factors=factors,
               gguf_version=g.version, shared_classifier=tied,
               tensor_types=sorted({g.type_name(n) for n in g.tensors}))
    return LlamaModel(cfg, emb, layers, t("output_norm.weight"), out, source=path, extra=dict(gguf=g))


def load_model(path):
    if not os.path.exists(path):
        raise RefError(f"model file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    return load_gguf(path) if magic == GGUF_MAGIC else load_llama2c(path)


# ----------------------------------------------------------------------------------------------------
# Forward pass (float64)
# ----------------------------------------------------------------------------------------------------
def rmsnorm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w, over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def apply_rope(x, positions, base, n_rot, rope_type, freq_scale=1.0, freq_factors=None):
    """x: (n, heads, head_dim). Rotates pair i by angle p * scale * base^(-2i/n_rot) / factor_i, i < n_rot/2
    (llama.cpp's rope without YaRN). 'norm' pairs channels (2i, 2i+1); 'neox' pairs (i, i + n_rot/2).
    Channels >= n_rot pass through."""
    half = n_rot // 2
    theta = float(base) ** (-(2.0 * np.arange(half)) / n_rot) * float(freq_scale)  # (half,)
    if freq_factors is not None:
        theta = theta / np.asarray(freq_factors, dtype=np.float64)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * theta[None, :]  # (n, half)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    if rope_type == "norm":
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    elif rope_type == "neox":
        a, b = x[..., 0:half], x[..., half:n_rot]
        out[..., 0:half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
    else:
        raise RefError(f"unknown rope type {rope_type!r} (norm|neox)")
    return out


def silu(x):
    return x * (0.5 * (1.0 + np.tanh(0.5 * x)))  # x * sigmoid(x), overflow-free


def forward(model, tokens, rope_type=None, rope_base=None, norm_eps=None, start_pos=0, use_freq_factors=True):
    """Causal forward over `tokens` (positions start_pos..) from an empty cache -> logits (n, vocab) float64.
    rope_type / rope_base / norm_eps override the model's values and use_freq_factors=False drops Llama-3.1's
    frequency factors (for negative controls). Biases follow the projections; Q/K norms (per head) come
    before RoPE."""
    c = model.cfg
    rope_type = rope_type or c["rope_type"]
    base = c["rope_base"] if rope_base is None else rope_base
    eps = c["norm_eps"] if norm_eps is None else norm_eps
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size == 0:
        raise RefError("tokens must be a non-empty 1-D list")
    if tokens.min() < 0 or tokens.max() >= c["vocab_size"]:
        raise RefError(f"token id out of range [0, {c['vocab_size']})")
    n, H, KV, hd = tokens.size, c["n_heads"], c["n_kv_heads"], c["head_dim"]
    group = H // KV
    pos = np.arange(start_pos, start_pos + n)
    mask = np.triu(np.full((n, n), -np.inf), k=1)  # (q, k): key after query is masked
    scale = 1.0 / math.sqrt(hd)
    x = model.tok_embeddings[tokens].copy()  # (n, dim)
    for lw in model.layers:
        h = rmsnorm(x, lw["attn_norm"], eps)
        q, k, v = h @ lw["wq"].T, h @ lw["wk"].T, h @ lw["wv"].T
        q = q + lw["bq"] if lw.get("bq") is not None else q
        k = k + lw["bk"] if lw.get("bk") is not None else k
        v = v + lw["bv"] if lw.get("bv") is not None else v
        q, k, v = q.reshape(n, H, hd), k.reshape(n, KV, hd), v.reshape(n, KV, hd)
        q = rmsnorm(q, lw["q_norm"], eps) if lw.get("q_norm") is not None else q
        k = rmsnorm(k, lw["k_norm"], eps) if lw.get("k_norm") is not None else k
        rope = dict(freq_scale=c.get("rope_freq_scale", 1.0),
                    freq_factors=c.get("rope_freq_factors") if use_freq_factors else None)
        q = apply_rope(q, pos, base, c["n_rot"], rope_type, **rope)
        k = apply_rope(k, pos, base, c["n_rot"], rope_type, **rope)
        # GQA: query head h reads kv head h // group  (np.repeat gives kv0,kv0,..,kv1,kv1,..)
        k = np.repeat(k, group, axis=1)
        v = np.repeat(v, group, axis=1)
        s = np.matmul(q.transpose(1, 0, 2), k.transpose(1, 2, 0)) * scale + mask  # (H, q, k)
        s -= s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = np.matmul(p, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(n, H * hd)  # (n, H*hd)
        x = x + o @ lw["wo"].T
        h = rmsnorm(x, lw["ffn_norm"], eps)
        x = x + (silu(h @ lw["w1"].T) * (h @ lw["w3"].T)) @ lw["w2"].T
    return rmsnorm(x, model.norm, eps) @ model.output.T


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def perplexity(model, tokens, ctx, max_windows=None, first_token=None):
    """Non-overlapping windows of `ctx` tokens from the token stream (last partial window dropped); in each
    window tokens 1..ctx-1 are predicted from their prefix (fresh cache per window).
    first_token: if given, replaces token 0 of every window (e.g. BOS) -- a protocol variant for diagnosis.
    Returns dict(ppl=exp(mean NLL), nll=mean NLL, nll_sum, tokens=#scored, windows, ctx, window_nll)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    n_win = tokens.size // ctx
    if max_windows:
        n_win = min(n_win, max_windows)
    if ctx < 2 or n_win < 1:
        raise RefError(f"need at least one window of ctx={ctx} >= 2 tokens; have {tokens.size} tokens")
    per = []
    for w in range(n_win):
        seg = tokens[w * ctx:(w + 1) * ctx].copy()
        if first_token is not None:
            seg[0] = first_token
        lp = log_softmax(forward(model, seg)[:-1])
        per.append(-lp[np.arange(ctx - 1), seg[1:]])
    allnll = np.concatenate(per)
    mean = float(allnll.mean())
    return dict(ppl=math.exp(mean), nll=mean, nll_sum=float(allnll.sum()), tokens=int(allnll.size),
                windows=n_win, ctx=ctx, window_nll=[float(a.mean()) for a in per])


def rel_max_diff(a, ref):
    """max |a - ref| / max |ref| (the measure every check uses)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        raise RefError(f"shape mismatch {a.shape} vs {ref.shape}")
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


# ----------------------------------------------------------------------------------------------------
# GGUF writer (small random llama models)
# ----------------------------------------------------------------------------------------------------
def _enc_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _enc_value(vtype, value):
    """vtype: GGUF type id, or ('array', elem_type)."""
    if isinstance(vtype, tuple):
        etype = vtype[1]
        out = struct.pack("<IQ", etype, len(value))
        if etype == GGUF_STRING:
            return out + b"".join(_enc_str(s) for s in value)
        return out + np.asarray(value, dtype=_GGUF_NP[etype]).tobytes()
    if vtype == GGUF_STRING:
        return _enc_str(value)
    return struct.pack("<" + _GGUF_SCALAR_FMT[vtype], value)


def write_gguf(path, metadata, tensors, alignment=GGUF_DEFAULT_ALIGNMENT):
    """metadata: list of (key, vtype, value); tensors: list of (name, numpy_shape, type_name, raw_bytes).
    Writes GGUF v3; every tensor's data offset is aligned to `alignment`."""
    head = [GGUF_MAGIC, struct.pack("<IQQ", 3, len(tensors), len(metadata))]
    for key, vtype, value in metadata:
        tid = GGUF_ARRAY if isinstance(vtype, tuple) else vtype
        head.append(_enc_str(key) + struct.pack("<I", tid) + _enc_value(vtype, value))
    offset = 0
    blobs = []
    for name, shape, tname, raw in tensors:
        ne = list(reversed(shape))
        head.append(_enc_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                    + struct.pack("<IQ", GGML_TYPE_BY_NAME[tname], offset))
        pad = -len(raw) % alignment
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header = b"".join(head)
    header += b"\0" * (-len(header) % alignment)
    with open(path, "wb") as f:
        f.write(header)
        for b in blobs:
            f.write(b)


def tiny_vocab(vocab):
    """ids 0,1,2 = <unk>,<s>,</s>; then 256 byte tokens <0x00>.. if vocab allows; then plain pieces."""
    if vocab < 3:
        raise RefError("vocab must be >= 3")
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    if vocab >= 3 + 256:
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        types += [6] * 256  # BYTE
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < vocab:
        piece, k = "", i
        while True:
            piece = letters[k % 26] + piece
            k = k // 26 - 1
            if k < 0:
                break
        tokens.append("\u2581" + piece)
        types.append(1)  # NORMAL
        i += 1
    scores = [0.0, 0.0, 0.0] + [-float(j) for j in range(vocab - 3)]
    return tokens, scores, types


def write_random_gguf(path, dim=64, hidden=192, n_layers=2, n_heads=4, n_kv_heads=None, vocab=320, ctx=128,
                      dtype="F32", tied=True, seed=0, rope_base=500000.0, norm_eps=1e-6, embd_dtype=None,
                      name=None, arch="llama", head_dim=None, rope_freqs=False, rope_scale=None):
    """Write a small random GGUF v3 of `arch` (llama, qwen2: + Q/K/V biases, qwen3: + per-head Q/K norms).
    Norm weights and biases are F32; every matrix (token_embd, output, attention, FFN) is stored as `dtype`
    (token_embd as `embd_dtype` if given). Quantised types need dim and hidden to be multiples of 32.
    Weights: N(0, gain/sqrt(fan_in)), norm weights ~1 +- 0.1 (Q/K norms +- 0.3), biases N(0, 0.5), embeddings
    rms ~0.5, so logits come out O(1..10). head_dim sets attention.key_length (q_dim may then differ from dim);
    rope_freqs (llama) adds a Llama-3.1-style rope_freqs.weight (factors 1 for the fast pairs rising to 8 for
    the slow ones); rope_scale adds linear RoPE scaling with that factor. Returns the config dict."""
    if arch not in GGUF_ARCHS:
        raise RefError(f"arch must be one of {sorted(GGUF_ARCHS)}")
    n_kv_heads = n_kv_heads or n_heads
    dtype = dtype.upper()
    embd_dtype = (embd_dtype or dtype).upper()
    if dtype not in LLAMA_FTYPE or embd_dtype not in LLAMA_FTYPE:
        raise RefError(f"dtype must be one of {sorted(LLAMA_FTYPE)}")
    if (head_dim is None and dim % n_heads) or n_heads % n_kv_heads:
        raise RefError("dim must be a multiple of n_heads and n_heads of n_kv_heads")
    hd = head_dim or dim // n_heads
    rng = np.random.default_rng(seed)

    def mat(out_dim, in_dim, gain=1.0):
        return (rng.standard_normal((out_dim, in_dim)) * (gain / math.sqrt(in_dim))).astype(np.float32)

    def normw(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    tensors = []

    def add(name_, arr, tname):
        tensors.append((name_, arr.shape, tname, encode_tensor(arr, tname)))

    emb = (0.5 * rng.standard_normal((vocab, dim))).astype(np.float32)
    add("token_embd.weight", emb, embd_dtype)
    add("output_norm.weight", normw(dim), "F32")
    if not tied:
        add("output.weight", mat(vocab, dim, gain=2.0), dtype)
    for l in range(n_layers):
        p = f"blk.{l}."
        add(p + "attn_norm.weight", normw(dim), "F32")
        add(p + "attn_q.weight", mat(n_heads * hd, dim, 1.5), dtype)
        add(p + "attn_k.weight", mat(n_kv_heads * hd, dim, 1.5), dtype)
        add(p + "attn_v.weight", mat(n_kv_heads * hd, dim), dtype)
        add(p + "attn_output.weight", mat(dim, n_heads * hd), dtype)
        add(p + "ffn_norm.weight", normw(dim), "F32")
        add(p + "ffn_gate.weight", mat(hidden, dim), dtype)
        add(p + "ffn_down.weight", mat(dim, hidden), dtype)
        add(p + "ffn_up.weight", mat(hidden, dim), dtype)
        if arch == "qwen2":
            for t_, n_ in (("q", n_heads * hd), ("k", n_kv_heads * hd), ("v", n_kv_heads * hd)):
                add(p + f"attn_{t_}.bias", (0.5 * rng.standard_normal(n_)).astype(np.float32), "F32")
        if arch == "qwen3":
            for t_ in ("q", "k"):
                add(p + f"attn_{t_}_norm.weight", (1.0 + 0.3 * rng.standard_normal(hd)).astype(np.float32), "F32")
    if rope_freqs:
        half = hd // 2
        add("rope_freqs.weight", np.where(np.arange(half) < half // 2, 1.0,
                                          np.linspace(1.0, 8.0, half)).astype(np.float32), "F32")

    toks, scores, types = tiny_vocab(vocab)
    U32, F32 = GGUF_UINT32, GGUF_FLOAT32
    a = arch
    md = [
        ("general.architecture", GGUF_STRING, arch),
        ("general.name", GGUF_STRING, name or f"cqkv-random-{dtype.lower()}-s{seed}"),
        ("general.alignment", U32, GGUF_DEFAULT_ALIGNMENT),
        ("general.file_type", U32, LLAMA_FTYPE[dtype]),
        (f"{a}.context_length", U32, ctx),
        (f"{a}.embedding_length", U32, dim),
        (f"{a}.block_count", U32, n_layers),
        (f"{a}.feed_forward_length", U32, hidden),
        (f"{a}.rope.dimension_count", U32, hd),
        (f"{a}.attention.head_count", U32, n_heads),
        (f"{a}.attention.head_count_kv", U32, n_kv_heads),
        (f"{a}.attention.layer_norm_rms_epsilon", F32, norm_eps),
        (f"{a}.rope.freq_base", F32, rope_base),
        ("tokenizer.ggml.model", GGUF_STRING, "llama"),
        ("tokenizer.ggml.tokens", ("array", GGUF_STRING), toks),
        ("tokenizer.ggml.scores", ("array", F32), scores),
        ("tokenizer.ggml.token_type", ("array", GGUF_INT32), types),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", GGUF_BOOL, True),
    ]
    if head_dim is not None:
        md += [(f"{a}.attention.key_length", U32, hd), (f"{a}.attention.value_length", U32, hd)]
    if rope_scale is not None:
        md += [(f"{a}.rope.scaling.type", GGUF_STRING, "linear"), (f"{a}.rope.scaling.factor", F32, rope_scale)]
    write_gguf(path, md, tensors)
    return dict(path=path, dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                vocab=vocab, ctx=ctx, dtype=dtype, tied=tied, seed=seed, rope_base=rope_base, norm_eps=norm_eps)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def parse_tokens(s):
    try:
        return [int(t) for t in s.replace(" ", "").split(",") if t]
    except ValueError:
        raise RefError(f"--tokens must be comma-separated integers, got {s!r}")


def _cmd_info(a):
    m = load_model(a.model)
    print(json.dumps(m.cfg, indent=1))
    g = m.extra.get("gguf")
    if g is not None:
        for k, v in g.metadata.items():
            if isinstance(v, (list, np.ndarray)):
                print(f"  {k}: array[{len(v)}]")
            else:
                print(f"  {k}: {v!r}")
        for name, info in g.tensors.items():
            print(f"  tensor {name}: {g.type_name(name)} ne={list(info['ne'])}")


def _cmd_logits(a):
    m = load_model(a.model)
    lg = forward(m, parse_tokens(a.tokens), rope_type=a.rope, rope_base=a.rope_base)
    lg.astype("<f4").tofile(a.out)
    print(f"wrote {a.out}: {lg.shape[0]}x{lg.shape[1]} float32; max|logit| {np.abs(lg).max():.4f}")


def _cmd_compare(a):
    m = load_model(a.model)
    toks = parse_tokens(a.tokens)
    ref = forward(m, toks, rope_type=a.rope)
    got = np.fromfile(a.logits, dtype="<f4")
    if got.size != ref.size:
        raise RefError(f"{a.logits}: {got.size} floats, expected {ref.shape[0]}x{ref.shape[1]} = {ref.size}")
    r = rel_max_diff(got.reshape(ref.shape), ref)
    ok = r < a.tol
    print(f"{'PASS' if ok else 'FAIL'}: max|diff|/max|logit| = {r:.3e} (tol {a.tol:g})")
    return 0 if ok else 1


def _cmd_perplexity(a):
    m = load_model(a.model)
    if a.tokens_json:
        with open(a.tokens_json) as f:
            toks = json.load(f)
    else:
        toks = parse_tokens(a.tokens)
    r = perplexity(m, toks, a.ctx, a.max_windows)
    print(json.dumps({k: v for k, v in r.items() if k != "window_nll"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


def _cmd_write_random(a):
    cfg = write_random_gguf(a.out, dim=a.dim, hidden=a.hidden, n_layers=a.layers, n_heads=a.heads,
                            n_kv_heads=a.kv_heads, vocab=a.vocab, ctx=a.ctx, dtype=a.dtype, tied=a.tied,
                            seed=a.seed, rope_base=a.rope_base, norm_eps=a.eps, arch=a.arch, head_dim=a.head_dim,
                            rope_freqs=a.rope_freqs, rope_scale=a.rope_scale)
    print(json.dumps(cfg))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="print config, metadata and tensor types")
    p.add_argument("--model", required=True)
    p.set_defaults(fn=_cmd_info)
    p = sub.add_parser("logits", help="write reference logits as raw little-endian float32 (n_tokens, vocab)")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rope", choices=["norm", "neox"])
    p.add_argument("--rope-base", type=float)
    p.set_defaults(fn=_cmd_logits)
    p = sub.add_parser("compare", help="compare a raw fp32 logits file against the reference")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--logits", required=True)
    p.add_argument("--rope", choices=["norm", "neox"])
    p.add_argument("--tol", type=float, default=1e-4)
    p.set_defaults(fn=_cmd_compare)
    p = sub.add_parser("perplexity", help="reference perplexity over non-overlapping ctx windows")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens-json", help="file holding one JSON array of token ids")
    p.add_argument("--tokens")
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--max-windows", type=int)
    p.add_argument("--json")
    p.set_defaults(fn=_cmd_perplexity)
    p = sub.add_parser("write-random", help="write a small random llama/qwen2/qwen3 GGUF v3")
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int)
    p.add_argument("--vocab", type=int, default=320)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--dtype", default="F32", choices=sorted(LLAMA_FTYPE))
    p.add_argument("--tied", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rope-base", type=float, default=500000.0)
    p.add_argument("--eps", type=float, default=1e-6)
    p.add_argument("--arch", default="llama", choices=sorted(GGUF_ARCHS))
    p.add_argument("--head-dim", type=int, help="attention.key_length (default dim / heads)")
    p.add_argument("--rope-freqs", action="store_true", help="add a Llama-3.1-style rope_freqs.weight (llama)")
    p.add_argument("--rope-scale", type=float, help="linear RoPE scaling factor")
    p.set_defaults(fn=_cmd_write_random)
    a = ap.parse_args(argv)
    if a.cmd == "perplexity" and not (a.tokens_json or a.tokens):
        ap.error("perplexity needs --tokens-json or --tokens")
    try:
        return a.fn(a) or 0
    except RefError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
