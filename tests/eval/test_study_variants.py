#!/usr/bin/env python3
"""Checks of the CQ study's issue-14 variant rows (eval/study_variants.py, study_runs.py): cache
names of old runs unchanged, decode-mode runs cached apart from prefill ones, the exact reference
and the bar, and the skip of value kinds the cqkv binary does not know. Runs no cqkv.

  python3 tests/eval/test_study_variants.py
"""
import json
import os
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "eval"))
import study_formats as sf  # noqa: E402
import study_variants as sv  # noqa: E402
from study_runs import Runner  # noqa: E402


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)


def row(fmt, family, ppl, kld, bits):
    return {"model_name": "cq-tiny", "data_name": "c4", "format": fmt, "family": family,
            "ppl": ppl, "kld": kld, "kv_bits_per_channel": bits, "top1_agree": 0.9}


class Names(unittest.TestCase):
    def test_kmeans_names_unchanged(self):
        # Cached runs of the first study and the recipe are found by these names.
        self.assertEqual(sf.Codebook("cq-tiny", "4c8b", True, "pre-rope", "128x256").name,
                         "cq-tiny_4c8b_fisher_pre-rope_128x256")
        self.assertEqual(sf.Codebook("cq-tiny", "8c8b", False, "post-rope", "16x256").name,
                         "cq-tiny_8c8b_uniform_post-rope")
        self.assertEqual(
            sf.Codebook("cq-tiny", "4c8b", True, "pre-rope", "128x256", "additive").name,
            "cq-tiny_4c8b_fisher_pre-rope_128x256_additive")

    def test_rows(self):
        rows = sv.rows("cq-tiny", "128x256", "runs")
        specs = [spec for _, spec, _, _ in rows]
        # One cache file each: the tag and the forced batch name it.
        self.assertEqual(len({(sf.tag(s), b) for _, s, _, b in rows}), len(rows))
        for fam, spec, cbs, batch in rows:
            self.assertTrue(fam.startswith(sv.FAMILY_PREFIX))
            if ":fs" in spec:  # fast-scan keys exist for post-RoPE codebooks only, approximate
                self.assertTrue(all(cb.keys == "post-rope" for cb in cbs), spec)
                self.assertEqual(batch, 1, spec)
        self.assertIn("K=cq:runs/cq-tiny_4c8b_fisher_pre-rope_128x256.cqcb:r32,"
                      "V=cq:runs/cq-tiny_2c4b_fisher_pre-rope_128x256.cqcb:r32", specs)
        self.assertIn("cq:runs/cq-tiny_8c8b_fisher_post-rope_128x256.cqcb:fs:r32", specs)


class Judge(unittest.TestCase):
    def setUp(self):
        rec = "cq:cq-tiny_4c8b_fisher_pre-rope_128x256.cqcb"
        self.results = [row("fp32", "fp32", 100.0, 0.0, 32),
                        row(rec, "CQ recipe", 101.0, 0.010, 2),
                        row(rec + ":r32", "CQ recipe r32", 100.2, 0.001, 2)]

    def judge(self, fmt, ppl, kld):
        r = row(fmt, sv.FAMILY_PREFIX + "x", ppl, kld, 2)
        return sv.table([r], self.results, "128x256")[-1].split(" | ")[-1]

    def test_reference_same_bits_and_window(self):
        v = row("cq:a.cqcb:r32", sv.FAMILY_PREFIX + "x", 100.3, 0.0011, 2)
        self.assertEqual(sv.reference(v, self.results, "128x256")["ppl"], 100.2)
        v = row("cq:a.cqcb", sv.FAMILY_PREFIX + "x", 100.3, 0.0011, 2)
        self.assertEqual(sv.reference(v, self.results, "128x256")["ppl"], 101.0)
        v = row("cq:a.cqcb", sv.FAMILY_PREFIX + "x", 100.3, 0.0011, 4)
        self.assertIsNone(sv.reference(v, self.results, "128x256"))

    def test_bar(self):
        self.assertEqual(self.judge("cq:a.cqcb", 101.5, 0.0119), "yes |")
        self.assertEqual(self.judge("cq:a.cqcb", 101.6, 0.0100), "no |")  # +0.59% ppl
        self.assertEqual(self.judge("cq:a.cqcb", 101.0, 0.0121), "no |")  # 1.21x KL
        self.assertEqual(self.judge("cq:a.cqcb:r32", 100.3, 0.0011), "yes |")


class Runs(unittest.TestCase):
    def runner(self, d, cqkv="cqkv"):
        args = types.SimpleNamespace(max_windows=24, window_batch=512, cqkv=cqkv, shared=d,
                                     threads=1)
        log = open(os.path.join(d, "log"), "w")
        self.addCleanup(log.close)
        return Runner(args, d, log)

    def test_decode_runs_cached_apart(self):
        with tempfile.TemporaryDirectory() as d:
            spec = "cq:" + os.path.join(d, "x.cqcb")
            dump({"windows": 24, "batch": 512, "ppl": 1.0}, os.path.join(d, "cq-tiny_c4_x.json"))
            r = self.runner(d)
            self.assertEqual(r.perplexity("cq-tiny", "c4", spec, may_run=False)["ppl"], 1.0)
            self.assertIsNone(r.perplexity("cq-tiny", "c4", spec, may_run=False, batch=1))
            dump({"windows": 24, "batch": 1, "ppl": 2.0}, os.path.join(d, "cq-tiny_c4_x_b1.json"))
            self.assertEqual(
                r.perplexity("cq-tiny", "c4", spec, may_run=False, batch=1)["ppl"], 2.0)
            # Windowed runs too: the study's own row is never taken for a forced-batch one.
            dump({"windows": 24, "batch": 1, "ppl": 3.0},
                 os.path.join(d, "cq-tiny_c4_x_r32.json"))
            self.assertIsNone(r.perplexity("cq-tiny", "c4", spec + ":r32", may_run=False,
                                           batch=1))
            self.assertEqual(
                r.perplexity("cq-tiny", "c4", spec + ":r32", may_run=False)["ppl"], 3.0)
            dump({"windows": 24, "batch": 512, "ppl": 4.0},
                 os.path.join(d, "cq-tiny_c4_x_r32_b1.json"))  # made with another batch
            self.assertIsNone(r.perplexity("cq-tiny", "c4", spec + ":r32", may_run=False,
                                           batch=1))

    def test_unknown_value_kind_skipped(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "cqkv")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\necho '  --values TEXT:{kmeans,additive}=kmeans'\n"
                        "touch " + os.path.join(d, "ran") + "\n")
            os.chmod(fake, 0o755)
            r = self.runner(d, fake)
            self.assertTrue(r.knows_values("additive"))
            self.assertFalse(r.knows_values("residual"))
            cb = sf.Codebook("cq-tiny", "4c8b", True, "pre-rope", "128x256", "residual")
            os.remove(os.path.join(d, "ran"))
            self.assertFalse(r.calibrate(cb))  # skipped: no calibration started
            self.assertFalse(os.path.exists(os.path.join(d, "ran")))
            self.assertFalse(os.path.exists(cb.path(d)))

    def test_known_value_kind_calibrated(self):
        with tempfile.TemporaryDirectory() as d:
            fake, argv = os.path.join(d, "cqkv"), os.path.join(d, "argv")
            # Prints a --values line that knows residual; for calibrate, records its arguments
            # and writes the -o file.
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nfor a; do [ \"$a\" = --help ] && "
                        "echo '  --values TEXT:{kmeans,additive,residual}=kmeans' && exit 0; done\n"
                        f"echo \"$@\" > {argv}\n"
                        "while [ $# -gt 0 ]; do [ \"$1\" = -o ] && touch \"$2\"; shift; done\n")
            os.chmod(fake, 0o755)
            cb = sf.Codebook("cq-tiny", "4c8b", True, "pre-rope", "128x256", "residual")
            self.assertTrue(self.runner(d, fake).calibrate(cb))
            with open(argv) as f:
                args = f.read().split()
            self.assertIn("--values", args)
            self.assertEqual(args[args.index("--values") + 1], "residual")
            self.assertTrue(os.path.exists(cb.path(d)))
            # k-means codebooks pass no --values, so binaries from before the flag still work.
            km = sf.Codebook("cq-tiny", "2c4b", True, "pre-rope", "128x256")
            self.assertTrue(self.runner(d, fake).calibrate(km))
            with open(argv) as f:
                self.assertNotIn("--values", f.read().split())


if __name__ == "__main__":
    unittest.main()
