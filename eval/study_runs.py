"""Cached `cqkv` runs for the CQ study: calibration, perplexity/KL and zero-shot tasks.

Every run writes its JSON under runs/; a later study reuses it when the JSON exists and was made
with the same settings, so parts can be rerun cheaply. Codebooks are calibrated lazily, only when a
run that needs them is not cached.
"""
import json
import os
import subprocess
import sys
import time

import study_formats as sf


class Runner:
    def __init__(self, args, runs_dir, log):
        self.args, self.runs_dir, self.log = args, runs_dir, log
        self._value_kinds = None  # what `cqkv calibrate --values` accepts, read once
        self._skipped = set()  # codebooks already reported as not calibratable by this binary

    def knows_values(self, kind):
        """True when the cqkv binary can calibrate value codebooks of this kind (residual values
        arrive after the binary the study may be run with)."""
        if kind == "kmeans":
            return True
        if self._value_kinds is None:
            p = subprocess.run([self.args.cqkv, "calibrate", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            line = next((x for x in p.stdout.splitlines() if "--values" in x), "")
            self._value_kinds = line
        return kind in self._value_kinds

    def _run(self, cmd):
        self.log.write("$ " + " ".join(cmd) + "\n")
        self.log.flush()
        t0 = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log.write(p.stdout + f"[{time.time() - t0:.1f} s, exit {p.returncode}]\n")
        self.log.flush()
        if p.returncode != 0:
            last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else str(p.returncode)
            print(f"  failed: {last}", file=sys.stderr, flush=True)
        return p.returncode == 0

    def model_args(self, model_name):
        rel_model, rel_tok, _, _ = sf.MODELS[model_name]
        sh = self.args.shared
        return ["-m", os.path.join(sh, rel_model), "--tokenizer", os.path.join(sh, rel_tok),
                "-t", str(self.args.threads)]

    def calibrate(self, cb):
        """Make sure cb's codebook file exists; False when calibration failed."""
        path = cb.path(self.runs_dir)
        if os.path.exists(path):
            return True
        if not self.knows_values(cb.values):
            if cb.name in self._skipped:
                return False
            self._skipped.add(cb.name)
            print(f"[{cb.model}] skipping {cb.name}: {self.args.cqkv} does not know "
                  f"`calibrate --values {cb.values}` yet (rebuild it from a tree that does)",
                  file=sys.stderr, flush=True)
            return False
        cmd = [self.args.cqkv, "calibrate", "-q"] + self.model_args(cb.model) + [
            "--data", os.path.join(self.args.shared, cb.data), "--config", cb.cfg, "--tokens",
            cb.tokens, "--keys", cb.keys, "--in-memory", "-o", path,
            "--json", os.path.join(self.runs_dir, cb.name + ".calib.json")]
        if cb.fisher:
            cmd.append("--fisher")
        if cb.values != "kmeans":  # older binaries have no --values: k-means runs do not pass it
            cmd += ["--values", cb.values]
        print(f"[{cb.model}] calibrating {cb.name}", file=sys.stderr, flush=True)
        return self._run(cmd)

    @staticmethod
    def _cached(path, valid):
        if not os.path.exists(path):
            return None
        r = json.load(open(path))
        return r if valid(r) else None

    def perplexity(self, model_name, data_name, spec, cbs=(), may_run=True, batch=None):
        """Perplexity + KL vs fp32 of one format: the run's JSON, or None if it failed or is not
        cached and may_run is False. batch forces -b (1: decode mode, so the decode kernels
        compute every score) and names the run's file _b<N>, apart from the study's own rows."""
        window = sf.has_window(spec)
        suffix = "" if batch is None else f"_b{batch}"
        out = os.path.join(self.runs_dir, f"{model_name}_{data_name}_{sf.tag(spec)}{suffix}.json")
        # A windowed run made before the per-query prefill fix, with -b 512, records no batch.
        r = self._cached(out, lambda r: r["windows"] == self.args.max_windows
                         and (not window or "batch" in r)
                         and (batch is None or r.get("batch") == batch))
        if r is not None:
            return r
        if not may_run or not all(self.calibrate(cb) for cb in cbs):
            return None
        if batch is None:
            batch = self.args.window_batch if window else 512
        ctx = sf.MODELS[model_name][2]
        cmd = [self.args.cqkv, "perplexity", "-q"] + self.model_args(model_name) + [
            "--data", os.path.join(self.args.shared, sf.DATA[data_name]), "--ctx", str(ctx),
            "--kv", spec, "--kl-base", "fp32", "--max-windows", str(self.args.max_windows),
            "-b", str(batch), "--json", out]
        print(f"[{model_name}/{data_name}] {sf.short_spec(spec)} (-b {batch})", file=sys.stderr,
              flush=True)
        if not self._run(cmd):
            return None
        r = json.load(open(out))
        r["batch"] = batch
        json.dump(r, open(out, "w"), indent=2, sort_keys=True)
        return r

    def eval_tasks(self, model_name, spec, limit, cbs=(), may_run=True):
        """Zero-shot accuracy of one format over the study's tasks: the JSON, or None."""
        out = os.path.join(self.runs_dir, f"{model_name}_zeroshot_{sf.tag(spec)}.json")
        r = self._cached(out, lambda r: r["limit"] == limit
                         and ",".join(x["task"] for x in r["results"]) == self.args.tasks)
        if r is not None:
            return r
        if not may_run or not all(self.calibrate(cb) for cb in cbs):
            return None
        cmd = [self.args.cqkv, "eval-tasks", "-q"] + self.model_args(model_name) + [
            "--data-dir", os.path.join(self.args.shared, "data/zeroshot"), "--tasks",
            self.args.tasks, "--limit", str(limit), "--kv", spec, "--json", out]
        print(f"[{model_name}/zero-shot] {sf.short_spec(spec)}", file=sys.stderr, flush=True)
        if not self._run(cmd):
            return None
        return json.load(open(out))
