"""Float64 NumPy reference of the K/V gradients cqkv's ForwardBackwardKv computes (src/model/backward.h).

Written from the math, independent of the C++ code; built on llama_ref.py's loaders, rmsnorm and apply_rope.
For a window of n tokens at positions 0..n-1:
    loss = sum_{i < n-1} -log softmax(logits_i)[tokens[i+1]]
and per layer l, with channel c = kv_head * head_dim + d:
    k_pre (n, kv_dim): keys before RoPE (after the K bias and per-head K norm, when the model has them);  k = R(pos) k_pre (what attention uses);  v (n, kv_dim)
    dk = d loss / d k,  dk_pre = R(pos)^T dk = d loss / d k_pre,  dv = d loss / d v

Library:
    forward_kv(model, tokens, perturb=None) -> (logits, records): a forward that keeps every activation the
        backward needs; `perturb` = (layer, 'k'|'k_pre'|'v', token, channel, delta) adds delta to one entry
        (for 'k_pre' before the rotation, so k is rotated from the perturbed k_pre).
    window_loss(model, tokens, perturb=None) -> float: the summed NLL above.
    kv_gradients(model, tokens) -> dict(loss, k_pre, k, v, dk_pre, dk, dv), the last six lists over layers
        of (n, kv_dim) float64 arrays, by manual backpropagation.
"""
import math

import numpy as np

import llama_ref as R

KINDS = ("k_pre", "k", "v")


def _rope(x, positions, cfg):
    return R.apply_rope(x, positions, cfg["rope_base"], cfg["n_rot"], cfg["rope_type"],
                        cfg.get("rope_freq_scale", 1.0), cfg.get("rope_freq_factors"))


def _project(a, lw, name, heads, hd, eps):
    """W a + bias, reshaped (n, heads, hd), and the per-head norm when the layer has one: (raw, out)."""
    raw = a @ lw["w" + name].T
    if lw.get("b" + name) is not None:
        raw = raw + lw["b" + name]
    raw = raw.reshape(a.shape[0], heads, hd)
    norm = lw.get(name + "_norm")
    return raw, (R.rmsnorm(raw, norm, eps) if norm is not None else raw)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _rmsnorm_backward(x, w, eps, dy):
    """d/dx of x * r * w with r = (mean(x^2) + eps)^-1/2, given dy: r u - r^3 x (u . x) / C, u = dy * w."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    u = dy * w
    return r * u - r ** 3 * x * np.sum(u * x, axis=-1, keepdims=True) / x.shape[-1]


def forward_kv(model, tokens, perturb=None):
    c = model.cfg
    tokens = np.asarray(tokens, dtype=np.int64)
    n, H, KV, hd, eps = tokens.size, c["n_heads"], c["n_kv_heads"], c["head_dim"], c["norm_eps"]
    group = H // KV
    pos = np.arange(n)
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    scale = 1.0 / math.sqrt(hd)
    x = model.tok_embeddings[tokens].copy()
    records = []
    for l, lw in enumerate(model.layers):
        rec = dict(x_in=x)
        a = R.rmsnorm(x, lw["attn_norm"], eps)
        q_raw, q = _project(a, lw, "q", H, hd, eps)
        q = _rope(q, pos, c)
        k_raw, k_pre = _project(a, lw, "k", KV, hd, eps)
        k_pre = k_pre.copy()
        v = _project(a, lw, "v", KV, hd, eps)[1].copy()
        if perturb is not None and perturb[0] == l and perturb[1] == "k_pre":
            k_pre.reshape(n, KV * hd)[perturb[2], perturb[3]] += perturb[4]
        k = _rope(k_pre, pos, c)
        if perturb is not None and perturb[0] == l and perturb[1] in ("k", "v"):
            (k if perturb[1] == "k" else v).reshape(n, KV * hd)[perturb[2], perturb[3]] += perturb[4]
        kr, vr = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # head h reads kv head h // group
        p = _softmax(np.einsum("ihd,jhd->hij", q, kr) * scale + mask)  # (H, query, key)
        o = np.einsum("hij,jhd->ihd", p, vr).reshape(n, H * hd)
        x_mid = x + o @ lw["wo"].T
        b = R.rmsnorm(x_mid, lw["ffn_norm"], eps)
        gate, up = b @ lw["w1"].T, b @ lw["w3"].T
        x = x_mid + (R.silu(gate) * up) @ lw["w2"].T
        rec.update(q=q, q_raw=q_raw, k_raw=k_raw, k_pre=k_pre, k=k, v=v, p=p, x_mid=x_mid, gate=gate, up=up)
        records.append(rec)
    records.append(dict(x_final=x))
    return R.rmsnorm(x, model.norm, eps) @ model.output.T, records


def window_loss(model, tokens, perturb=None):
    logits, _ = forward_kv(model, tokens, perturb)
    lp = R.log_softmax(logits[:-1])
    return float(-lp[np.arange(len(tokens) - 1), np.asarray(tokens[1:])].sum())


def kv_gradients(model, tokens):
    c = model.cfg
    tokens = np.asarray(tokens, dtype=np.int64)
    n, H, KV, hd, eps = tokens.size, c["n_heads"], c["n_kv_heads"], c["head_dim"], c["norm_eps"]
    group = H // KV
    pos = np.arange(n)
    scale = 1.0 / math.sqrt(hd)
    logits, records = forward_kv(model, tokens)
    lp = R.log_softmax(logits[:-1])
    rows = np.arange(n - 1)
    loss = float(-lp[rows, tokens[1:]].sum())

    dlogits = np.zeros_like(logits)
    dlogits[:-1] = np.exp(lp)
    dlogits[rows, tokens[1:]] -= 1.0
    dx = _rmsnorm_backward(records[-1]["x_final"], model.norm, eps, dlogits @ model.output)

    out = {kind: [None] * c["n_layers"] for kind in KINDS + ("dk_pre", "dk", "dv")}
    for l in reversed(range(c["n_layers"])):
        lw, r = model.layers[l], records[l]
        # MLP: x_out = x_mid + w2 (silu(w1 b) * (w3 b)), b = rmsnorm(x_mid)
        dh = dx @ lw["w2"]
        sg = 1.0 / (1.0 + np.exp(-r["gate"]))
        dgate = dh * r["up"] * sg * (1.0 + r["gate"] * (1.0 - sg))
        dup = dh * r["gate"] * sg
        dx = dx + _rmsnorm_backward(r["x_mid"], lw["ffn_norm"], eps, dgate @ lw["w1"] + dup @ lw["w3"])
        # Attention: o_i = sum_j p_ij v_j, p_i = softmax(scale q_i . k_j)
        do = (dx @ lw["wo"]).reshape(n, H, hd)
        p, q = r["p"], r["q"]
        kr, vr = np.repeat(r["k"], group, axis=1), np.repeat(r["v"], group, axis=1)
        dp = np.einsum("ihd,jhd->hij", do, vr)
        ds = p * (dp - np.sum(p * dp, axis=-1, keepdims=True))
        dq = np.einsum("hij,jhd->ihd", ds, kr) * scale
        dk = (np.einsum("hij,ihd->jhd", ds, q) * scale).reshape(n, KV, group, hd).sum(axis=2)
        dv = np.einsum("hij,ihd->jhd", p, do).reshape(n, KV, group, hd).sum(axis=2)
        # R(pos)^T = R(-pos): the gradient of a rotated vector is rotated back.
        dk_pre, dq_pre = _rope(dk, -pos, c), _rope(dq, -pos, c)
        # Per-head Q/K norms (qwen3) sit between the projection and RoPE; biases pass gradients through.
        dq_raw, dk_raw = dq_pre, dk_pre
        if lw.get("q_norm") is not None:
            dq_raw = _rmsnorm_backward(r["q_raw"], lw["q_norm"], eps, dq_pre)
        if lw.get("k_norm") is not None:
            dk_raw = _rmsnorm_backward(r["k_raw"], lw["k_norm"], eps, dk_pre)
        da = (dq_raw.reshape(n, -1) @ lw["wq"] + dk_raw.reshape(n, -1) @ lw["wk"]
              + dv.reshape(n, -1) @ lw["wv"])
        dx = dx + _rmsnorm_backward(r["x_in"], lw["attn_norm"], eps, da)
        for name, val in (("k_pre", r["k_pre"]), ("k", r["k"]), ("v", r["v"]), ("dk_pre", dk_pre), ("dk", dk),
                          ("dv", dv)):
            out[name][l] = val.reshape(n, KV * hd)
    out["loss"] = loss
    return out
