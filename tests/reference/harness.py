"""Shared plumbing for the tests/reference/test_*.py CTest checks: arguments, PASS/FAIL bookkeeping, and
running the cqkv CLI. (Not a test itself: CMake only registers test_*.py.)

Every test is invoked by CTest as
    python3 tests/reference/test_X.py --cqkv PATH_TO_CQKV --shared SHARED_DIR --workdir SCRATCH_DIR
and exits non-zero when any check failed; its last line is 'N passed, M failed'.
"""
import argparse
import json
import os
import shlex
import subprocess
import time

import llama_ref  # noqa: F401  (importing it first re-executes under an interpreter with numpy)
import numpy as np


def parse_args(description, argv=None):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cqkv", default="", help="path of the cqkv CLI binary under test")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"),
                    help="the shared/ folder with models and data")
    ap.add_argument("--workdir", default="/tmp/cqkv-pytest", help="scratch folder (created if absent)")
    ap.add_argument("--ref-only", action="store_true",
                    help="run only the reference's own checks (no cqkv binary needed; for developing the reference)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds allowed for one cqkv invocation")
    return ap.parse_args(argv)


class Suite:
    """Counts checks and prints one line per check."""

    def __init__(self, name):
        self.name, self.passed, self.failed, self.skipped, self.t0 = name, 0, 0, 0, time.time()
        self.failures = []

    def check(self, name, ok, detail=""):
        ok = bool(ok)
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(name)
        return ok

    def fail(self, name, detail):
        return self.check(name, False, detail)

    def skip(self, name, why):
        print(f"[SKIP] {name}: {why}", flush=True)
        self.skipped += 1

    def close_check(self, name, value, tol, what="max|diff|/max|logit|"):
        """PASS when value < tol."""
        return self.check(name, value < tol, f"{what} = {value:.3e} (tol < {tol:g})")

    def far_check(self, name, value, tol, what="max|diff|/max|logit|"):
        """PASS when value > tol (a negative control: the two must differ)."""
        return self.check(name, value > tol, f"{what} = {value:.3e} (must be > {tol:g})")

    def finish(self):
        dt = time.time() - self.t0
        if self.failures:
            print(f"{self.name}: failed checks: " + ", ".join(self.failures))
        if self.skipped:
            print(f"{self.name}: {self.skipped} skipped")
        print(f"{self.name}: {dt:.1f} s")
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


class CqkvError(Exception):
    pass


class Cqkv:
    """Runs the cqkv CLI; the contract each call relies on is stated in the docstrings of the tests."""

    def __init__(self, path, timeout=180.0):
        self.path, self.timeout = path, timeout
        self.available = bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)
        self._help = {}

    def missing_reason(self):
        if not self.path:
            return "no --cqkv binary given"
        if not os.path.exists(self.path):
            return f"cqkv binary missing: {self.path} (build the cqkv_cli target first)"
        return f"cqkv binary not executable: {self.path}"

    def run(self, args, timeout=None):
        cmd = [self.path] + [str(a) for a in args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise CqkvError(f"timed out after {timeout or self.timeout:.0f} s: {shlex.join(cmd)}")
        except OSError as e:
            raise CqkvError(f"could not run {shlex.join(cmd)}: {e}")
        if p.returncode != 0:
            tail = (p.stderr or p.stdout or "").strip().splitlines()[-8:]
            raise CqkvError(f"exit {p.returncode}: {shlex.join(cmd)}\n    " + "\n    ".join(tail))
        return p.stdout

    def help_text(self, sub):
        """`cqkv SUB --help` output (stdout+stderr, any exit code): used to discover optional flags."""
        if sub not in self._help:
            try:
                p = subprocess.run([self.path, sub, "--help"], capture_output=True, text=True, timeout=30)
                self._help[sub] = (p.stdout or "") + (p.stderr or "")
            except (OSError, subprocess.TimeoutExpired):
                self._help[sub] = ""
        return self._help[sub]

    def logits(self, model, tokens, out, vocab, chunk=None, kv=None, threads=None):
        """`cqkv logits` -> float64 array (n_tokens, vocab) read from the raw little-endian fp32 file."""
        if os.path.exists(out):
            os.remove(out)
        args = ["logits", "--model", model, "--tokens", ",".join(str(int(t)) for t in tokens), "--out", out]
        if chunk is not None:
            args += ["--chunk", chunk]
        if kv is not None:
            args += ["--kv", kv]
        if threads is not None:
            args += ["-t", threads]
        self.run(args)
        if not os.path.exists(out):
            raise CqkvError(f"cqkv logits exited 0 but wrote no {out}")
        a = np.fromfile(out, dtype="<f4")
        n = len(tokens)
        if a.size != n * vocab:
            raise CqkvError(f"{out}: {a.size} floats, expected n_tokens*vocab = {n}*{vocab} = {n * vocab}")
        a = a.reshape(n, vocab).astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise CqkvError(f"{out}: contains NaN/Inf")
        return a

    def tokenize(self, model, text_file, extra=()):
        out = self.run(["tokenize", "--model", model, "--text-file", text_file, *extra])
        try:
            ids = json.loads(out)
        except json.JSONDecodeError as e:
            raise CqkvError(f"cqkv tokenize did not print one JSON array ({e}); stdout starts {out[:200]!r}")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise CqkvError(f"cqkv tokenize printed JSON that is not a list of ints: {str(ids)[:200]}")
        return ids

    def perplexity(self, model, data, ctx, json_out, max_windows=None, extra=()):
        if os.path.exists(json_out):
            os.remove(json_out)
        args = ["perplexity", "--model", model, "--data", data, "--ctx", ctx, "--json", json_out, *extra]
        if max_windows is not None:
            args += ["--max-windows", max_windows]
        self.run(args)
        try:
            with open(json_out) as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CqkvError(f"cqkv perplexity wrote no readable JSON at {json_out}: {e}")
        missing = [k for k in ("ppl", "nll", "tokens", "windows", "ctx") if k not in r]
        if missing:
            raise CqkvError(f"{json_out}: missing keys {missing} (has {sorted(r)})")
        return r


def workdir_for(args, test_name):
    d = os.path.join(os.path.abspath(args.workdir), test_name)
    os.makedirs(d, exist_ok=True)
    return d


def shared_path(args, *parts):
    return os.path.join(os.path.abspath(args.shared), *parts)
