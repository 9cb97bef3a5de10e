#!/usr/bin/env python3
"""Hugging Face checkpoint folders (`-m DIR`): config.json + safetensors, loaded against the GGUF they came from.

The fixture is written here with NumPy, independently of cqkv's reader: stories260K's llama.cpp GGUF is turned
back into the Hugging Face layout (its Q/K rows un-permuted, i.e. the inverse of llama.cpp's
convert_hf_to_gguf.py LlamaModel.permute, tensor names of transformers' LlamaForCausalLM) and written as one
model.safetensors, as three shards with model.safetensors.index.json, and in F16 and BF16.

Checks (max|diff|/max|logit| over all positions):
- F32 folder (NEOX RoPE on HF rows) vs the GGUF (NORM RoPE on permuted rows): the same model, only the channel
  order inside each head differs, so only float summation order differs: < 1e-5.
- sharded vs single file, and a file whose F32 tensors sit off float alignment (copied at load): exactly 0.
- F32 folder vs the float64 NumPy reference on the GGUF: < 1e-4 (the bound the other reference tests use for
  fp32 vs float64); the reference run with NEOX on the HF tensors must equal it run with NORM on the GGUF
  (< 1e-9: proves the fixture's un-permutation is the inverse of llama.cpp's).
- F16/BF16 folders vs the reference run on the same rounded weights: < 1e-4.
- `cqkv convert DIR -o x.gguf` restores llama.cpp's Q/K permutation: every tensor of x.gguf equals the
  original GGUF's bit for bit, and the logits are identical (0).
- a folder with SmolLM2's tokenizer.json (a random BF16 model with 48 embedding rows more than its 49152 tokens):
  the folder's tokenizer is used, the GGUF that `cqkv convert` writes from it tokenizes identically, pads the
  vocabulary with [PAD<id>] tokens to the embedding rows, and runs like the folder (< 1e-5).
- a random folder with head_dim 16 on hidden_size 32 (4 heads) and Llama-3.1 RoPE scaling ("llama3", original
  context 64, 200 tokens) vs the reference with its RoPE given the divisors transformers defines: < 1e-4; convert
  stores them as llama.cpp does (rope_freqs.weight, attention.key_length) and the GGUF runs like the folder.
- a random MistralForCausalLM folder in F16 with linear RoPE scaling x4 vs the reference (< 1e-4); its converted
  GGUF records the scaling and runs like the folder (< 1e-5).
- Qwen2 / Qwen3 folders from llama.cpp's qwen2-tiny / qwen3-tiny GGUFs (rows unchanged, as llama.cpp's converter
  keeps them): logits equal the GGUF's exactly, agree with the reference (< 1e-4), and convert gives back the same
  architecture and tensors.
- errors name the file/tensor/key: truncated shard, bad header length, I8 dtype, missing tensor, unexpected
  tensor, unknown architecture, an unsupported RoPE scaling (yarn), missing shard.

Contracts used: cqkv logits --model M --tokens ... --out FILE; cqkv convert DIR -o OUT [--tokenizer T];
cqkv tokenize --model M --text T.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

TOL_ORDER = 1e-5  # same model, different float summation order
TOL_REF = 1e-4  # fp32 engine vs float64 reference


# ----------------------------------------------------------------------------------------------------
# Fixture: writing Hugging Face folders with NumPy
# ----------------------------------------------------------------------------------------------------
def encode(x, dtype):
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()
    if dtype == "BF16":
        return R.to_bf16_bits(x).astype("<u2").tobytes()
    if dtype == "I8":
        return np.clip(np.round(x * 100), -128, 127).astype(np.int8).tobytes()
    raise ValueError(dtype)


def round_to(x, dtype):
    """The float values a tensor stored as `dtype` holds."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype(np.float64)
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float64)
    bits = R.to_bf16_bits(x).astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64)


def write_safetensors(path, tensors, dtypes=None, metadata=None):
    """tensors: dict name -> float array (row-major); dtypes: dict name -> dtype (default F32).
    Header padded with spaces to a multiple of 8, as the reference writer does."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, x in tensors.items():
        dt = (dtypes or {}).get(name, "F32")
        b = encode(x, dt)
        header[name] = {"dtype": dt, "shape": list(np.shape(x)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def unpermute_rows(w, n_head):
    """Inverse of llama.cpp's LlamaModel.permute: GGUF row h*hd + 2i + j -> HF row h*hd + j*hd/2 + i."""
    rows, cols = w.shape
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


HF_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def hf_from_gguf(path):
    """(config.json dict, HF tensors dict) for a GGUF `llama`, `qwen2` or `qwen3` file. Only `llama` rows are
    un-permuted: llama.cpp's converter keeps Qwen's rows as Hugging Face stores them (NEOX in both)."""
    g = R.GGUFFile(path)
    m = R.load_gguf(path)
    c = m.cfg
    arch = g.metadata["general.architecture"]
    llama = arch == "llama"
    t = {"model.embed_tokens.weight": g.tensor("token_embd.weight"),
         "model.norm.weight": g.tensor("output_norm.weight")}
    if "output.weight" in g.tensors:
        t["lm_head.weight"] = g.tensor("output.weight")

    def rows(x, n_head):
        return unpermute_rows(x, n_head) if llama else x

    for i in range(c["n_layers"]):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        t[q + "input_layernorm.weight"] = g.tensor(p + "attn_norm.weight")
        t[q + "self_attn.q_proj.weight"] = rows(g.tensor(p + "attn_q.weight"), c["n_heads"])
        t[q + "self_attn.k_proj.weight"] = rows(g.tensor(p + "attn_k.weight"), c["n_kv_heads"])
        t[q + "self_attn.v_proj.weight"] = g.tensor(p + "attn_v.weight")
        t[q + "self_attn.o_proj.weight"] = g.tensor(p + "attn_output.weight")
        for b in "qkv":
            if p + f"attn_{b}.bias" in g.tensors:
                t[q + f"self_attn.{b}_proj.bias"] = g.tensor(p + f"attn_{b}.bias")
        if arch == "qwen3":
            t[q + "self_attn.q_norm.weight"] = g.tensor(p + "attn_q_norm.weight")
            t[q + "self_attn.k_norm.weight"] = g.tensor(p + "attn_k_norm.weight")
        t[q + "post_attention_layernorm.weight"] = g.tensor(p + "ffn_norm.weight")
        t[q + "mlp.gate_proj.weight"] = g.tensor(p + "ffn_gate.weight")
        t[q + "mlp.up_proj.weight"] = g.tensor(p + "ffn_up.weight")
        t[q + "mlp.down_proj.weight"] = g.tensor(p + "ffn_down.weight")
    config = {"architectures": [HF_ARCH[arch]], "hidden_size": c["dim"],
              "intermediate_size": c["hidden_dim"], "num_hidden_layers": c["n_layers"],
              "num_attention_heads": c["n_heads"], "num_key_value_heads": c["n_kv_heads"],
              "head_dim": c["head_dim"], "rms_norm_eps": c["norm_eps"], "rope_theta": c["rope_base"],
              "max_position_embeddings": c["seq_len"], "vocab_size": c["vocab_size"],
              "tie_word_embeddings": "lm_head.weight" not in t, "hidden_act": "silu", "rope_scaling": None,
              "torch_dtype": "float32"}
    if arch != "llama":
        config.update(sliding_window=4096, use_sliding_window=False)  # as Qwen's configs have them
    return config, t


def write_folder(d, config, tensors, dtype="F32", n_shards=1, dtypes=None):
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    types = {n: dtype for n in tensors}
    types.update(dtypes or {})
    if n_shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors, types, {"format": "pt"})
        return d
    names = list(tensors)
    weight_map = {}
    for s in range(n_shards):
        part = names[s::n_shards]
        file = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        write_safetensors(os.path.join(d, file), {n: tensors[n] for n in part}, types, {"format": "pt"})
        weight_map.update({n: file for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    return d


def ref_from_hf(config, tensors, dtype, freq_factors=None):
    """The NumPy reference model of an HF folder: HF rows as stored, NEOX RoPE, weights rounded to `dtype`."""
    L = config["num_hidden_layers"]

    def w(n):
        return round_to(tensors[n], dtype)

    emb = w("model.embed_tokens.weight")
    out = w("lm_head.weight") if "lm_head.weight" in tensors else emb
    layers = []
    for i in range(L):
        q = f"model.layers.{i}."
        layers.append(dict(attn_norm=w(q + "input_layernorm.weight"), wq=w(q + "self_attn.q_proj.weight"),
                           wk=w(q + "self_attn.k_proj.weight"), wv=w(q + "self_attn.v_proj.weight"),
                           wo=w(q + "self_attn.o_proj.weight"), ffn_norm=w(q + "post_attention_layernorm.weight"),
                           w1=w(q + "mlp.gate_proj.weight"), w2=w(q + "mlp.down_proj.weight"),
                           w3=w(q + "mlp.up_proj.weight")))
        for b in "qkv":
            if q + f"self_attn.{b}_proj.bias" in tensors:
                layers[-1][f"b{b}"] = w(q + f"self_attn.{b}_proj.bias")
        if q + "self_attn.q_norm.weight" in tensors:
            layers[-1].update(q_norm=w(q + "self_attn.q_norm.weight"), k_norm=w(q + "self_attn.k_norm.weight"))
    hd = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    cfg = dict(dim=config["hidden_size"], hidden_dim=config["intermediate_size"], n_layers=L,
               n_heads=config["num_attention_heads"], n_kv_heads=config["num_key_value_heads"], head_dim=hd,
               vocab_size=config["vocab_size"], seq_len=config["max_position_embeddings"],
               rope_base=config["rope_theta"], n_rot=hd, norm_eps=config["rms_norm_eps"], rope_type="neox",
               rope_freq_factors=freq_factors)
    return R.LlamaModel(cfg, emb, layers, w("model.norm.weight"), out, source="hf fixture")


def random_hf(vocab, seed, head_dim=None, **config_extra):
    """A small random LlamaForCausalLM with tied embeddings; head_dim may differ from hidden / heads."""
    rng = np.random.default_rng(seed)
    dim, hidden, heads, kv = 32, 64, 4, 2
    hd = head_dim or dim // heads
    t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (vocab, dim)),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=dim)}
    q = "model.layers.0."
    t.update({q + "input_layernorm.weight": 1 + 0.1 * rng.normal(size=dim),
              q + "self_attn.q_proj.weight": rng.normal(0, 0.2, (heads * hd, dim)),
              q + "self_attn.k_proj.weight": rng.normal(0, 0.2, (kv * hd, dim)),
              q + "self_attn.v_proj.weight": rng.normal(0, 0.2, (kv * hd, dim)),
              q + "self_attn.o_proj.weight": rng.normal(0, 0.2, (dim, heads * hd)),
              q + "post_attention_layernorm.weight": 1 + 0.1 * rng.normal(size=dim),
              q + "mlp.gate_proj.weight": rng.normal(0, 0.2, (hidden, dim)),
              q + "mlp.up_proj.weight": rng.normal(0, 0.2, (hidden, dim)),
              q + "mlp.down_proj.weight": rng.normal(0, 0.2, (dim, hidden))})
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": dim, "intermediate_size": hidden,
              "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256, "vocab_size": vocab,
              "tie_word_embeddings": True, **config_extra}
    if head_dim:
        config["head_dim"] = head_dim
    return config, {k: v.astype(np.float32) for k, v in t.items()}


def llama3_factors(head_dim, base, factor, low, high, orig_ctx):
    """Llama-3.1 RoPE divisors per pair, as transformers' _compute_llama3_parameters defines them."""
    inv_freq = base ** (-np.arange(0, head_dim, 2) / head_dim)
    wavelen = 2 * np.pi / inv_freq
    smooth = (orig_ctx / wavelen - low) / (high - low)
    f = np.where(wavelen > orig_ctx / low, factor, 1 / ((1 - smooth) / factor + smooth))
    return np.where(wavelen < orig_ctx / high, 1.0, f)


# ----------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------
def expect_error(suite, cq, name, args, parts):
    """cqkv must exit non-zero with a message containing every string in `parts`."""
    p = subprocess.run([cq.path] + [str(a) for a in args], capture_output=True, text=True, timeout=cq.timeout)
    msg = (p.stderr or p.stdout).strip()
    missing = [s for s in parts if s not in msg]
    suite.check(f"error: {name}", p.returncode != 0 and not missing,
                f"exit {p.returncode}; {msg[-300:]!r}" + (f"; missing {missing}" if missing else ""))


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_hf_folder")
    work = H.workdir_for(args, "test_hf_folder")
    cq = H.Cqkv(args.cqkv, args.timeout)
    gguf = H.shared_path(args, "models", "stories260K", "stories260K.llamacpp.gguf")
    tok_bin = H.shared_path(args, "models", "stories260K", "tokenizer.bin")
    smol = H.shared_path(args, "tokenizers", "smollm2.tokenizer.json")
    if not os.path.exists(gguf):
        suite.skip("stories260K", f"{gguf} absent")
        return suite.finish()
    config, tensors = hf_from_gguf(gguf)
    V = config["vocab_size"]
    toks = [1] + [int(t) for t in np.random.default_rng(5).integers(3, V, 23)]

    # The reference: NEOX on the HF rows must be NORM on the GGUF rows, else the fixture is wrong.
    ref_gguf = R.forward(R.load_gguf(gguf), toks)
    ref_hf = ref_from_hf(config, tensors, "F32")
    suite.close_check("ref: HF rows + neox vs GGUF rows + norm", R.rel_max_diff(R.forward(ref_hf, toks), ref_gguf),
                      1e-9)
    suite.far_check("ref: HF rows + norm (must differ)",
                    R.rel_max_diff(R.forward(ref_hf, toks, rope_type="norm"), ref_gguf), 1e-2)
    if args.ref_only or not cq.available:
        suite.skip("cqkv checks", "--ref-only" if args.ref_only else cq.missing_reason())
        return suite.finish()

    def logits(model, name):
        try:
            return cq.logits(model, toks, os.path.join(work, name + ".f32"), V)
        except H.CqkvError as e:
            suite.fail(f"cqkv logits {name}", str(e))
            return None

    base = logits(gguf, "gguf")
    single = write_folder(os.path.join(work, "f32"), config, tensors)
    sharded = write_folder(os.path.join(work, "f32_sharded"), config, tensors, n_shards=3)
    got = logits(single, "f32")
    got_sh = logits(sharded, "f32_sharded")
    if base is not None and got is not None:
        suite.close_check("F32 folder vs GGUF", R.rel_max_diff(got, base), TOL_ORDER)
        suite.close_check("F32 folder vs reference", R.rel_max_diff(got, ref_gguf), TOL_REF)
    if got is not None and got_sh is not None:
        suite.check("sharded (3) == single", np.array_equal(got, got_sh),
                    f"max|diff| = {np.abs(got - got_sh).max():.3e}")
    # An odd-sized F16 tensor first in the file leaves every F32 tensor after it 2 bytes off float alignment;
    # those are copied at load (old checkpoints' rotary_emb.inv_freq is ignored, whatever its shape).
    odd = {"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(3, np.float32)}
    odd.update(tensors)
    d = write_folder(os.path.join(work, "f32_misaligned"), config, odd,
                     dtypes={"model.layers.0.self_attn.rotary_emb.inv_freq": "F16"})
    g = logits(d, "f32_misaligned")
    if g is not None and got is not None:
        suite.check("misaligned F32 tensors == aligned", np.array_equal(g, got),
                    f"max|diff| = {np.abs(g - got).max():.3e}")
    for dt in ("F16", "BF16"):
        d = write_folder(os.path.join(work, dt.lower()), config, tensors, dtype=dt)
        g = logits(d, dt.lower())
        if g is not None:
            ref = R.forward(ref_from_hf(config, tensors, dt), toks)
            suite.close_check(f"{dt} folder vs reference on {dt}-rounded weights", R.rel_max_diff(g, ref), TOL_REF)

    # convert: the folder back to GGUF `llama` must restore llama.cpp's tensors exactly.
    out = os.path.join(work, "from_hf.gguf")
    try:
        cq.run(["convert", sharded, "-o", out, "--tokenizer", tok_bin])
        a, b = R.GGUFFile(gguf), R.GGUFFile(out)
        diff = [n for n in a.tensors if n not in b.tensors or not np.array_equal(a.tensor(n), b.tensor(n))]
        suite.check("convert: tensors equal llama.cpp's", not diff, f"differing: {diff[:4]}")
        conv = logits(out, "converted")
        if conv is not None and base is not None:
            suite.check("convert: logits identical to the GGUF", np.array_equal(conv, base),
                        f"max|diff| = {np.abs(conv - base).max():.3e}")
    except (H.CqkvError, R.RefError) as e:
        suite.fail("convert", str(e))

    # A folder with its own tokenizer.json.
    if os.path.exists(smol):
        with open(smol) as f:
            n_vocab = len(json.load(f)["model"]["vocab"])
        rc, rt = random_hf(n_vocab + 48, 3)  # 48 embedding rows beyond the tokenizer, as HF models often have
        d = write_folder(os.path.join(work, "smol_random"), rc, rt, dtype="BF16")
        shutil.copy(smol, os.path.join(d, "tokenizer.json"))
        text = "Hello world, 12345 tokens!"
        try:
            ids_dir = json.loads(cq.run(["tokenize", "-m", d, "--text", text]))
            ids_tok = json.loads(cq.run(["tokenize", "-m", d, "--tokenizer", smol, "--text", text]))
            suite.check("folder tokenizer.json is used", ids_dir == ids_tok and len(ids_dir) > 3, f"{ids_dir}")
            smol_gguf = os.path.join(work, "smol_random.gguf")
            cq.run(["convert", d, "-o", smol_gguf, "--type", "bf16"])
            ids_gguf = json.loads(cq.run(["tokenize", "-m", smol_gguf, "--text", text]))
            suite.check("convert keeps the tokenizer.json vocabulary", ids_gguf == ids_dir, f"{ids_gguf}")
            toks_md = R.GGUFFile(smol_gguf).metadata.get("tokenizer.ggml.tokens", [])
            suite.check("convert pads the vocabulary to the embedding rows",
                        len(toks_md) == n_vocab + 48 and toks_md[-1] == f"[PAD{n_vocab + 47}]",
                        f"{len(toks_md)} tokens, last {toks_md[-1] if toks_md else None!r}")
            rtoks = ids_dir[:12]
            g1 = cq.logits(d, rtoks, os.path.join(work, "smol_dir.f32"), n_vocab + 48)
            g2 = cq.logits(smol_gguf, rtoks, os.path.join(work, "smol_gguf.f32"), n_vocab + 48)
            ref = R.forward(ref_from_hf(rc, rt, "BF16"), rtoks)
            suite.close_check("random BF16 folder vs reference", R.rel_max_diff(g1, ref), TOL_REF)
            suite.close_check("random BF16 folder vs its converted GGUF", R.rel_max_diff(g2, g1), TOL_ORDER)
        except (H.CqkvError, json.JSONDecodeError) as e:
            suite.fail("folder tokenizer", str(e))
    else:
        suite.skip("folder tokenizer", f"{smol} absent")

    # Qwen2 (Q/K/V biases, tied output) and Qwen3 (per-head Q/K norms, head_dim 64 on hidden 128) from llama.cpp's
    # GGUFs in shared/models/arch: the same rows and RoPE pairing as the GGUF, so the same logits bit for bit.
    for arch in ("qwen2", "qwen3"):
        src = H.shared_path(args, "models", "arch", f"{arch}-tiny.gguf")
        if not os.path.exists(src):
            suite.skip(arch, f"{src} absent")
            continue
        qc, qt = hf_from_gguf(src)
        d = write_folder(os.path.join(work, arch), qc, qt, n_shards=2)
        qtoks = [1] + [int(t) for t in np.random.default_rng(9).integers(3, qc["vocab_size"], 47)]
        try:
            a = cq.logits(src, qtoks, os.path.join(work, f"{arch}_gguf.f32"), qc["vocab_size"])
            b = cq.logits(d, qtoks, os.path.join(work, f"{arch}_dir.f32"), qc["vocab_size"])
            suite.check(f"{arch} folder == its GGUF", np.array_equal(a, b), f"max|diff| = {np.abs(a - b).max():.3e}")
            ref = R.forward(ref_from_hf(qc, qt, "F32"), qtoks)
            suite.close_check(f"{arch} folder vs reference", R.rel_max_diff(b, ref), TOL_REF)
            out = os.path.join(work, f"{arch}_from_hf.gguf")
            cq.run(["convert", d, "-o", out, "--tokenizer", src])
            ga, gb = R.GGUFFile(src), R.GGUFFile(out)
            diff = [n for n in ga.tensors if n not in gb.tensors or not np.array_equal(ga.tensor(n), gb.tensor(n))]
            suite.check(f"{arch} convert: architecture and tensors equal llama.cpp's",
                        gb.metadata.get("general.architecture") == arch and not diff,
                        f"{gb.metadata.get('general.architecture')}, differing: {diff[:4]}")
            c2 = cq.logits(out, qtoks, os.path.join(work, f"{arch}_conv.f32"), qc["vocab_size"])
            suite.check(f"{arch} convert: logits identical", np.array_equal(c2, a),
                        f"max|diff| = {np.abs(c2 - a).max():.3e}")
        except (H.CqkvError, R.RefError) as e:
            suite.fail(arch, str(e))

    # head_dim 16 on hidden 32 with 4 heads (Q 64 wide), and Llama-3.1 RoPE scaling, against the reference.
    rc, rt = random_hf(512, 11, head_dim=16, rope_theta=500000.0,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    d = write_folder(os.path.join(work, "llama3_hd16"), rc, rt)
    rtoks = [int(t) for t in np.random.default_rng(2).integers(0, 512, 200)]  # positions past 64
    factors = llama3_factors(16, 500000.0, 8.0, 1.0, 4.0, 64)
    ref_model = ref_from_hf(rc, rt, "F32", freq_factors=factors)
    ref = R.forward(ref_model, rtoks)
    unscaled = R.forward(ref_model, rtoks, use_freq_factors=False)
    suite.far_check("ref: llama3 scaling changes the logits", R.rel_max_diff(unscaled, ref), 1e-3)
    try:
        got = cq.logits(d, rtoks, os.path.join(work, "llama3.f32"), 512)
        suite.close_check("head_dim 16 + llama3 RoPE folder vs reference", R.rel_max_diff(got, ref), TOL_REF)
        out = os.path.join(work, "llama3_hd16.gguf")
        cq.run(["convert", d, "-o", out, "--tokenizer", tok_bin])
        g = R.GGUFFile(out)
        rf = g.tensor("rope_freqs.weight") if "rope_freqs.weight" in g.tensors else None
        suite.check("convert writes rope_freqs.weight and key_length",
                    rf is not None and np.allclose(rf, factors, rtol=1e-6)
                    and g.metadata.get("llama.attention.key_length") == 16,
                    f"rope_freqs {None if rf is None else rf.tolist()}, key_length "
                    f"{g.metadata.get('llama.attention.key_length')}")
        conv = cq.logits(out, rtoks, os.path.join(work, "llama3_conv.f32"), 512)
        suite.close_check("head_dim 16 + llama3 RoPE: converted GGUF vs folder", R.rel_max_diff(conv, got), TOL_ORDER)
    except (H.CqkvError, R.RefError) as e:
        suite.fail("head_dim 16 + llama3 RoPE", str(e))

    # Mistral with linear RoPE scaling x4 and a sliding window.
    mc, mt = random_hf(512, 13, rope_scaling={"type": "linear", "factor": 4.0}, sliding_window=128)
    mc["architectures"] = ["MistralForCausalLM"]
    d = write_folder(os.path.join(work, "mistral_linear"), mc, mt, dtype="F16")
    mtoks = [int(t) for t in np.random.default_rng(4).integers(0, 512, 100)]
    ref_model = ref_from_hf(mc, mt, "F16")
    ref_model.cfg["rope_freq_scale"] = 0.25
    ref = R.forward(ref_model, mtoks)
    ref_model.cfg["rope_freq_scale"] = 1.0
    suite.far_check("ref: linear scaling changes the logits", R.rel_max_diff(R.forward(ref_model, mtoks), ref), 1e-3)
    try:
        got = cq.logits(d, mtoks, os.path.join(work, "mistral.f32"), 512)
        suite.close_check("Mistral F16 folder, linear RoPE x4, vs reference", R.rel_max_diff(got, ref), TOL_REF)
        out = os.path.join(work, "mistral.gguf")
        cq.run(["convert", d, "-o", out, "--tokenizer", tok_bin, "--type", "f16"])
        md = R.GGUFFile(out).metadata
        conv = cq.logits(out, mtoks, os.path.join(work, "mistral_conv.f32"), 512)
        suite.check("Mistral convert: linear scaling keys, context capped at the window",
                    md.get("llama.rope.scaling.type") == "linear" and md.get("llama.rope.scaling.factor") == 4.0
                    and md.get("llama.context_length") == 128,
                    f"{md.get('llama.rope.scaling.type')} x{md.get('llama.rope.scaling.factor')}, "
                    f"context {md.get('llama.context_length')}")
        suite.close_check("Mistral converted GGUF vs folder", R.rel_max_diff(conv, got), TOL_ORDER)
    except (H.CqkvError, R.RefError) as e:
        suite.fail("Mistral linear", str(e))

    # Errors.
    def logits_args(d):
        return ["logits", "-m", d, "--tokens", "1,2,3", "--out", os.path.join(work, "err.f32")]

    d = write_folder(os.path.join(work, "err_trunc"), config, tensors, n_shards=3)
    shard = os.path.join(d, "model-00002-of-00003.safetensors")
    os.truncate(shard, os.path.getsize(shard) - 100)
    expect_error(suite, cq, "truncated shard", logits_args(d), ["model-00002-of-00003.safetensors", "truncated"])

    d = write_folder(os.path.join(work, "err_header"), config, tensors)
    with open(os.path.join(d, "model.safetensors"), "r+b") as f:
        f.write((1 << 40).to_bytes(8, "little"))
    expect_error(suite, cq, "bad header length", logits_args(d), ["model.safetensors", "header length"])

    name = "model.layers.2.mlp.up_proj.weight"
    d = write_folder(os.path.join(work, "err_i8"), config, tensors, dtypes={name: "I8"})
    expect_error(suite, cq, "I8 dtype", logits_args(d), [name, "I8"])

    d = write_folder(os.path.join(work, "err_missing"), config, {k: v for k, v in tensors.items() if k != name},
                     n_shards=2)
    expect_error(suite, cq, "missing tensor", logits_args(d), ["missing tensor", name])

    extra = dict(tensors)
    extra["model.layers.0.self_attn.q_proj.bias"] = np.zeros(config["hidden_size"], np.float32)
    d = write_folder(os.path.join(work, "err_extra"), config, extra)
    expect_error(suite, cq, "unexpected tensor", logits_args(d), ["model.layers.0.self_attn.q_proj.bias"])

    d = write_folder(os.path.join(work, "err_arch"), dict(config, architectures=["GPTNeoXForCausalLM"]), tensors)
    expect_error(suite, cq, "unknown architecture", logits_args(d), ["config.json", "GPTNeoXForCausalLM"])

    d = write_folder(os.path.join(work, "err_rope"), dict(config, rope_scaling={"rope_type": "yarn", "factor": 8.0}),
                     tensors)
    expect_error(suite, cq, "RoPE scaling", logits_args(d), ["config.json", "rope_scaling", "yarn"])

    d = write_folder(os.path.join(work, "err_shard"), config, tensors, n_shards=2)
    os.remove(os.path.join(d, "model-00001-of-00002.safetensors"))
    expect_error(suite, cq, "missing shard", logits_args(d),
                 ["model.safetensors.index.json", "model-00001-of-00002.safetensors"])
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
