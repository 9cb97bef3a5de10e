"""Independent float64 NumPy dequantiser for GGML's block formats beyond Q8_0/Q4_0: the K-quants
(Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and the 32-element fallbacks (Q4_1, Q5_0, Q5_1, IQ4_NL).

Written from the format definition (ggml-common.h's block structs and the element formulas of
ggml-quants.c's dequantize_row_*), vectorised over blocks with index arithmetic per element, and
computed exactly in float64 (every stored value is a small integer times fp16 scales), so the
engine's fp32 result may differ from it only by fp32 rounding of the final value.

Library:
    BLOCK[type] = (elements per block, bytes per block); TYPE_NAME[type]
    dequantize(raw_uint8, ggml_type, n_elements) -> float64 flat array
    tensor_bytes(gguf_file, name)                 -> the raw bytes of a tensor of any type above
"""
import numpy as np

F32, F16, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL = 0, 1, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20
TYPE_NAME = {F32: "F32", F16: "F16", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q2_K: "Q2_K",
             Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K", IQ4_NL: "IQ4_NL"}
BLOCK = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34),
         Q4_1: (32, 20), Q5_0: (32, 22), Q5_1: (32, 24), IQ4_NL: (32, 18),
         Q2_K: (256, 84), Q3_K: (256, 110), Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210)}
IQ4NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int64)

# Element index i of a 256-element super-block split as i = 128 h + 32 s + l (Q2_K, Q3_K, Q6_K) ...
_I = np.arange(256)
_H, _S, _L = _I // 128, (_I % 128) // 32, _I % 32
_SUB16 = 8 * _H + 2 * _S + _L // 16          # ... whose 16-element scale group is this
_K32, _L32 = _I // 32, _I % 32               # Q4_K / Q5_K: 32-element sub-block k, position l


def _half(b, off):
    return np.ascontiguousarray(b[:, off:off + 2]).view("<f2")[:, 0].astype(np.float64)


def _u32(b, off):
    return np.ascontiguousarray(b[:, off:off + 4]).view("<u4")[:, 0].astype(np.int64)


def _nibbles32(qs):
    """(nb, 16) bytes -> (nb, 32): element j < 16 is the low nibble of byte j, j >= 16 the high one of j - 16."""
    qs = qs.astype(np.int64)
    return np.concatenate([qs & 15, qs >> 4], axis=1)


def _fifth_bits(qh):
    """(nb,) 32-bit words -> (nb, 32) bit i of each."""
    return (qh[:, None] >> np.arange(32)) & 1


def _q4k_scale_min(s):
    """(nb, 12) packed bytes -> (scales, mins), each (nb, 8) 6-bit integers."""
    s = s.astype(np.int64)
    sc, mn = np.zeros((s.shape[0], 8), np.int64), np.zeros((s.shape[0], 8), np.int64)
    for k in range(8):
        if k < 4:
            sc[:, k], mn[:, k] = s[:, k] & 63, s[:, k + 4] & 63
        else:
            sc[:, k] = (s[:, k + 4] & 15) | ((s[:, k - 4] >> 6) << 4)
            mn[:, k] = (s[:, k + 4] >> 4) | ((s[:, k] >> 6) << 4)
    return sc, mn


def _q3k_scales(s):
    """(nb, 12) packed bytes -> (nb, 16) signed scales (-32..31)."""
    s = s.astype(np.int64)
    out = np.zeros((s.shape[0], 16), np.int64)
    for k in range(16):
        low = s[:, k] & 15 if k < 8 else s[:, k - 8] >> 4
        high = (s[:, 8 + k % 4] >> (2 * (k // 4))) & 3
        out[:, k] = (low | (high << 4)) - 32
    return out


def _blocks(t, b):
    """b: (nb, bytes per block) uint8 -> (nb, elements per block) float64."""
    if t == Q4_1:
        return _half(b, 0)[:, None] * _nibbles32(b[:, 4:20]) + _half(b, 2)[:, None]
    if t == Q5_0:
        q = _nibbles32(b[:, 6:22]) | (_fifth_bits(_u32(b, 2)) << 4)
        return _half(b, 0)[:, None] * (q - 16)
    if t == Q5_1:
        q = _nibbles32(b[:, 8:24]) | (_fifth_bits(_u32(b, 4)) << 4)
        return _half(b, 0)[:, None] * q + _half(b, 2)[:, None]
    if t == IQ4_NL:
        return _half(b, 0)[:, None] * IQ4NL_LEVELS[_nibbles32(b[:, 2:18])]
    b64 = b.astype(np.int64)
    if t == Q2_K:
        sc, qs = b64[:, 0:16], b64[:, 16:80]
        q = (qs[:, 32 * _H + _L] >> (2 * _S)) & 3
        g = sc[:, _SUB16]
        return _half(b, 80)[:, None] * (g & 15) * q - _half(b, 82)[:, None] * (g >> 4)
    if t == Q3_K:
        hm, qs = b64[:, 0:32], b64[:, 32:96]
        low = (qs[:, 32 * _H + _L] >> (2 * _S)) & 3
        bit = (hm[:, _L] >> (4 * _H + _S)) & 1
        q = low + 4 * bit - 4
        return _half(b, 108)[:, None] * _q3k_scales(b[:, 96:108])[:, _SUB16] * q
    if t in (Q4_K, Q5_K):
        sc, mn = _q4k_scale_min(b[:, 4:16])
        qs = b64[:, 48:176] if t == Q5_K else b64[:, 16:144]
        byte = qs[:, 32 * (_K32 // 2) + _L32]
        q = np.where(_K32 % 2 == 0, byte & 15, byte >> 4)
        if t == Q5_K:
            q = q | (((b64[:, 16:48][:, _L32] >> _K32) & 1) << 4)
        return _half(b, 0)[:, None] * sc[:, _K32] * q - _half(b, 2)[:, None] * mn[:, _K32]
    if t == Q6_K:
        ql, qh = b64[:, 0:128], b64[:, 128:192]
        sc = b[:, 192:208].view(np.int8).astype(np.int64)
        lo_byte = ql[:, 64 * _H + 32 * (_S % 2) + _L]
        low = np.where(_S < 2, lo_byte & 15, lo_byte >> 4)
        high = (qh[:, 32 * _H + _L] >> (2 * _S)) & 3
        q = ((high << 4) | low) - 32
        return _half(b, 208)[:, None] * sc[:, _SUB16] * q
    raise ValueError(f"not a block format: type {t}")


def dequantize(raw, ggml_type, n_elements):
    """raw: uint8 array with exactly the tensor's bytes -> float64 flat array of n_elements."""
    if ggml_type not in BLOCK:
        raise ValueError(f"unsupported GGML type {ggml_type}")
    be, bb = BLOCK[ggml_type]
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    if n_elements % be or raw.size != n_elements // be * bb:
        raise ValueError(f"{raw.size} bytes do not hold {n_elements} elements of {TYPE_NAME[ggml_type]}")
    if ggml_type == F32:
        return raw.view("<f4").astype(np.float64)
    if ggml_type == F16:
        return raw.view("<f2").astype(np.float64)
    b = raw.reshape(-1, bb)
    if ggml_type == Q8_0:
        return (_half(b, 0)[:, None] * b[:, 2:].view(np.int8)).reshape(-1)
    return _blocks(ggml_type, b).reshape(-1)


def tensor_bytes(g, name):
    """Raw bytes of tensor `name` of a llama_ref.GGUFFile `g` (whose own table may not know the type)."""
    info = g.tensors[name]
    be, bb = BLOCK[info["type"]]
    return g.mm[info["offset"]:info["offset"] + info["n"] // be * bb]
