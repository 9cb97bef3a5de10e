"""Issue 14's attention variants in the CQ study: which rows, and how each is judged.

Batched prefill reads dequantised rows; only one-token steps (`-b 1`, decode mode) reach the
decode kernels (fast-scan key scores, additive value sums, rope-comm key scores), so every row whose
decode kernel is approximate runs in decode mode. The bar (issue 14, "Targets"): at most
+0.5% perplexity and KL within 1.2x of the exact k-means CQ of the same bits, read here as the
recipe's codebook (Fisher, pre-RoPE, 128 x 256 tokens) with the same fp16 window.
"""
import study_formats as sf

FAMILY_PREFIX = "issue 14: "
PROTOCOL = ("cq-tiny", "c4")  # the model and hold-out
DECODE_BATCH, BATCH = 1, 512
PPL_BAR, KL_BAR = 0.005, 1.2
VALUE_CFG = {2: "2c4b", 1: "4c4b"}  # 4-bit k-means values at 2 and 1 bits per channel


def _fam(name):
    return FAMILY_PREFIX + name


def rows(model, recipe_tokens, runs_dir):
    """(family, spec, codebooks, -b) of every variant row, at 2 and 1 bits, each bare and with
    the recipe's 32-token fp16 window (`:r32`). Rows whose decode kernel approximates (fast-scan
    scores) or whose kernel the row exists to show (rope-comm) run in decode mode; rows whose
    decode path computes the prefill's sums exactly (additive and residual value sums, the exact
    histogram) run batched, 3x cheaper, and measure the representation."""
    out = []
    for bits in (2, 1):
        cfg = sf.recipe(model, recipe_tokens, bits).cfg
        rec = sf.recipe(model, recipe_tokens, bits)
        post = sf.Codebook(model, cfg, True, "post-rope", recipe_tokens)
        add = sf.Codebook(model, cfg, True, "pre-rope", recipe_tokens, "additive")
        add_post = sf.Codebook(model, cfg, True, "post-rope", recipe_tokens, "additive")
        res = sf.Codebook(model, cfg, True, "pre-rope", recipe_tokens, "residual")
        val4 = sf.Codebook(model, VALUE_CFG[bits], True, "pre-rope", recipe_tokens)
        for win in ("", ":r32"):
            p = lambda cb: "cq:" + cb.path(runs_dir)  # noqa: E731
            out += [
                # Pre-RoPE codebooks of whole RoPE pairs decode with the rope-comm kernel.
                (_fam("rope-comm keys (recipe)"), p(rec) + win, (rec,), DECODE_BATCH),
                (_fam("exact, post-RoPE k-means"), p(post) + win, (post,), DECODE_BATCH),
                (_fam("fast-scan keys"), p(post) + ":fs" + win, (post,), DECODE_BATCH),
                (_fam("additive values"), p(add) + win, (add,), BATCH),
                # The same sums by the decode kernel (bit-plane weights times basis vectors).
                (_fam("additive values, decode kernel"), p(add) + win, (add,), DECODE_BATCH),
                (_fam("additive values, fast-scan keys"), p(add_post) + ":fs" + win, (add_post,),
                 DECODE_BATCH),
                (_fam("residual values"), p(res) + win, (res,), BATCH),
                (_fam("4-bit k-means values"), f"K={p(rec)}{win},V={p(val4)}{win}", (rec, val4),
                 BATCH),
            ]
    return out


def is_variant(row):
    return row["family"].startswith(FAMILY_PREFIX)


def _window(fmt):
    return ":r32" in fmt


def reference(row, results, recipe_tokens):
    """The exact k-means row a variant is judged against: the recipe's codebook of the same bits
    and window, from the study's own rows (not the variant rows) on the same model and data."""
    bits = row["kv_bits_per_channel"]
    if bits not in (1.0, 2.0):
        return None
    rec = sf.recipe(row["model_name"], recipe_tokens, int(bits))
    want = "cq:" + rec.name + ".cqcb" + (":r32" if _window(row["format"]) else "")
    return next((r for r in results if not is_variant(r) and r["format"] == want
                 and r["model_name"] == row["model_name"]
                 and r["data_name"] == row["data_name"]), None)


def same_file_exact(row, variants):
    """For a fast-scan row, the exact-kernel variant row on the same codebook file and window."""
    if ":fs" not in row["format"]:
        return None
    want = row["format"].replace(":fs", "")
    return next((r for r in variants if r["format"] == want
                 and r["model_name"] == row["model_name"]
                 and r["data_name"] == row["data_name"]), None)


def table(rows_, results, recipe_tokens):
    """Markdown lines of the variant table of one model and data set."""
    base = next((r["ppl"] for r in results if r["format"] == "fp32"
                 and r["model_name"] == rows_[0]["model_name"]
                 and r["data_name"] == rows_[0]["data_name"]), None)
    out = ["| format | variant | bits/channel | fp16 window | ppl | vs fp32 | vs exact | KL (nats) "
           "| KL / exact | KL / same file exact | top-1 agree | -b | meets bar |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows_, key=lambda r: (-r["kv_bits_per_channel"], _window(r["format"]),
                                          r["family"])):
        ref, same = reference(r, results, recipe_tokens), same_file_exact(r, rows_)
        dppl = f"{100 * (r['ppl'] / base - 1):+.2f}%" if base else ""
        vs_ref = f"{100 * (r['ppl'] / ref['ppl'] - 1):+.2f}%" if ref else ""
        kl_ref = f"{r['kld'] / ref['kld']:.2f}x" if ref else ""
        kl_same = f"{r['kld'] / same['kld']:.2f}x" if same else ""
        meets = ("yes" if r["ppl"] <= ref["ppl"] * (1 + PPL_BAR)
                 and r["kld"] <= KL_BAR * ref["kld"] else "no") if ref else ""
        out.append(f"| {r['format']} | {r['family'][len(FAMILY_PREFIX):]} | "
                   f"{r['kv_bits_per_channel']:.3g} | {'32' if _window(r['format']) else '-'} | "
                   f"{r['ppl']:.3f} | {dppl} | {vs_ref} | {r['kld']:.4g} | {kl_ref} | {kl_same} | "
                   f"{r['top1_agree']:.3f} | {r.get('batch', 512)} | {meets} |")
    return out
