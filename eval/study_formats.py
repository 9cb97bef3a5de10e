"""Which KV formats the CQ study runs: models, data, codebook recipes, baselines, mixed specs.

Pure data and small helpers, no subprocesses: study.py runs what these lists name, study_report.py
groups rows by the `family` given here.
"""
import os
import re

MODELS = {
    # name: (model, tokenizer, ctx, KIVI group: its default 32 where the head dim allows)
    "cq-tiny": ("models/cq-tiny/model.bin", "tokenizers/llama2.tokenizer.bin", 256, 32),
    "stories260K": ("models/stories260K/model.bin", "models/stories260K/tokenizer.bin", 256, 8),
}
DATA = {
    "wikitext2": "data/wikitext-2/wiki.test.raw",
    "c4": "data/c4/c4_validation_1900.jsonl:1800:1900",
}
# Calibration text: C4 documents cq-tiny was trained on, never the hold-out (docs 1800..1899).
CALIB_DATA = "data/c4/c4_validation_1900.jsonl:0:1800"
CALIB_DATA_OLD = "data/c4/c4_validation_1900.jsonl:0:400"  # the first study's 16 x 256 grid

ZEROSHOT_TASKS = "piqa,arc_easy,arc_challenge,winogrande,hellaswag,boolq,copa,openbookqa,siqa,lambada"


class Codebook:
    """One calibration: CQ config, Fisher or uniform k-means, key side, calibration tokens, value
    codebook kind (`cqkv calibrate --values`: kmeans, additive, residual)."""

    def __init__(self, model, cfg, fisher, keys, tokens, values="kmeans"):
        self.model, self.cfg, self.fisher, self.keys, self.tokens = model, cfg, fisher, keys, tokens
        self.values = values

    @property
    def name(self):
        # The 16 x 256 grid keeps the first study's file names, so its cached runs stay valid;
        # k-means values add nothing to the name for the same reason.
        suffix = "" if self.tokens == "16x256" else "_" + self.tokens
        suffix += "" if self.values == "kmeans" else "_" + self.values
        return (f"{self.model}_{self.cfg}_{'fisher' if self.fisher else 'uniform'}_{self.keys}"
                f"{suffix}")

    @property
    def data(self):
        return CALIB_DATA_OLD if self.tokens == "16x256" else CALIB_DATA

    @property
    def family(self):
        return (f"CQ {'fisher' if self.fisher else 'uniform'} {self.keys}"
                + ("" if self.tokens == "16x256" else f" {self.tokens}")
                + ("" if self.values == "kmeans" else f" {self.values} values"))

    def path(self, runs_dir):
        return os.path.join(runs_dir, self.name + ".cqcb")


def codebooks(model, recipe_tokens):
    """The first study's grid (16 x 256 tokens) and the recipe (Fisher, pre-RoPE, more tokens)."""
    out = []
    for cfg in ("2c8b", "4c8b", "8c8b"):
        out += [Codebook(model, cfg, False, "post-rope", "16x256"),
                Codebook(model, cfg, True, "post-rope", "16x256"),
                Codebook(model, cfg, True, "pre-rope", "16x256")]
    for cfg in ("4c8b", "8c8b"):
        out.append(Codebook(model, cfg, True, "pre-rope", recipe_tokens))
    return out


def recipe(model, recipe_tokens, bits):
    """The default recipe's codebook at 2 or 1 bits per channel."""
    return Codebook(model, {2: "4c8b", 1: "8c8b"}[bits], True, "pre-rope", recipe_tokens)


def cq_formats(cbs, runs_dir):
    """(family, spec, codebook) rows: every codebook bare, and with a 32-token fp16 window where the
    recipe or the paper's later version (post-RoPE Fisher) uses one."""
    out = []
    for cb in cbs:
        spec = "cq:" + cb.path(runs_dir)
        out.append((cb.family, spec, cb))
        if cb.tokens != "16x256" or (cb.fisher and cb.keys == "post-rope"):
            out.append((cb.family + " r32", spec + ":r32", cb))
    return out


def baselines(kivi_group):
    """(family, spec) of the calibration-free formats."""
    out = [("fp16", "fp16")]
    for b in (4, 2, 1):
        # KIVI's default 128-token fp16 window would be half of a 256-token window: use the
        # same 32-token window the CQ "r32" runs get.
        out += [("int-token", f"int{b}-token"), ("int-channel", f"int{b}-channel"),
                ("kivi r32", f"kivi{b}:r32" + (f":g{kivi_group}" if kivi_group != 32 else ""))]
    out += [("nf-token", "nf4"), ("nf-token", "nf3"), ("nf-token", "nf2")]
    # Rotated baselines: llama.cpp's Hadamard rotation before integer codes, TurboQuant-style.
    for b in (4, 2):
        out += [("int-token hadamard", f"int{b}-token:hadamard"),
                ("int-channel hadamard", f"int{b}-channel:hadamard")]
    out += [("tq", "tq4"), ("tq", "tq3"), ("tq", "tq2"), ("tq qjl", "tq3:qjl"), ("tq qjl", "tq2:qjl")]
    return out


def mixed(cb2, cb1):
    """(family, spec) of mixed-precision formats (kv/mixed_spec.h): fp16 first/last layers,
    different K and V formats, and CQ mixes that land between 1 and 2 bits per channel;
    cb2 / cb1 are the recipe's 2-bit and 1-bit codebook paths."""
    return [("mixed fp16 ends", "int2-token;fp16@first1,last1"),
            ("mixed fp16 ends", "int2-token;fp16@first1"),
            ("mixed K/V", "K=int4-token,V=int2-token"),
            ("mixed K/V", "K=int2-token,V=int4-token"),
            ("mixed K/V", "K=tq3,V=tq2"),
            ("mixed CQ", f"cq:{cb1};cq:{cb2}@first1"),
            ("mixed CQ", f"K=cq:{cb2},V=cq:{cb1}"),
            ("mixed CQ", f"K=cq:{cb1},V=cq:{cb2}")]


def has_window(spec):
    """True when the spec keeps recent tokens in fp16 (CQ :r<R>, KIVI): such runs need -b 1 until
    the prefill path gives each query its own window."""
    return bool(re.search(r"(^|[;,=])kivi|:r\d", spec))


def short_spec(spec):
    """The spec with every cq codebook path cut to its file name (tables, plots)."""
    return re.sub(r"cq:([^;@,:]*)", lambda m: "cq:" + os.path.basename(m.group(1)), spec)


def tag(spec):
    """A file-name-safe tag for a spec (the first study's naming, so old runs stay cached)."""
    if ";" in spec or "@" in spec or "=" in spec:  # mixed: paths cut, separators gone
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", short_spec(spec).replace(".cqcb", ""))
    return os.path.basename(spec.replace("cq:", "cq_")).replace(".cqcb", "").replace(":", "_")
