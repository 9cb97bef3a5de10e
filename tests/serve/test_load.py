#!/usr/bin/env python3
"""`cqkv serve` under concurrent load, end to end (Python 3 standard library only).

    python3 tests/serve/test_load.py --cqkv BUILD/cqkv --shared SHARED_DIR --workdir DIR

1. `cqkv calibrate` makes 2c4b CQ codebooks for stories260K (20 C4 training documents, 4x64 tokens);
   every run below uses that CQ KV cache.
2. `cqkv generate --temp 0` gives the greedy reference continuation of each test prompt (it prints
   the prompt, then the continuation, then a newline).
3. `cqkv serve --port 0` on 127.0.0.1 only; the test reads the port from its "listening on" line
   and waits for GET /health.
4. 32 clients at once: greedy completions, streamed and not, whose text must equal the reference;
   sampled and chat requests; streams the client drops after two events; malformed requests that
   must get their 4xx (bad JSON, a wrong type, max_tokens 0, an unknown role, a prompt longer than
   the context, a body over the 1 MiB limit). Half of them stream. Every request has a hard
   timeout.
5. GET /metrics must settle (within a few seconds, for cancellations) to 0 running and queued
   sequences and 0 KV pages used; then SIGTERM must end the server with exit code 0.

It skips (exit 0, "skipped: serve not available") only when `cqkv serve --help` fails, i.e. on a
build without the server. Bounded: a watchdog fails the test after 58 s, and the server is always
killed at the end.
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

MODEL = ("models", "stories260K", "model.bin")
CALIB_DATA = ("data", "c4", "c4_validation_1900.jsonl")
N_GREEDY = 24  # tokens per greedy completion
PROMPTS = ["Once upon a time", "The little dog", "Lily wanted to", "One day, a boy named Tim"]
REQUEST_TIMEOUT = 30.0  # seconds for any one HTTP request
WATCHDOG_S = 58.0


class Checks:
    def __init__(self):
        self.lock = threading.Lock()
        self.passed, self.failed = 0, []

    def check(self, name, ok, detail=""):
        with self.lock:
            print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
            if ok:
                self.passed += 1
            else:
                self.failed.append(name)
        return ok

    def finish(self):
        if self.failed:
            print("failed checks: " + ", ".join(self.failed))
        print(f"{self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


def run(cmd, timeout):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{p.stderr.strip()[-2000:]}")
    return p.stdout


# ---------------------------------------------------------------------------------------------
# HTTP helpers (one connection per request, as independent clients would)

def http_request(port, method, path, body=None, timeout=REQUEST_TIMEOUT):
    """-> (status, body text). `body` is bytes, str or a JSON-able object."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def sse_request(port, path, body, drop_after=None, timeout=REQUEST_TIMEOUT):
    """POST with "stream": true. -> (status, [event payloads], dropped). Drops the connection after
    `drop_after` data events when given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return r.status, [r.read().decode("utf-8", "replace")], False
        events = []
        while True:
            line = r.readline()
            if not line:
                return r.status, events, False
            line = line.decode("utf-8").rstrip("\r\n")
            if not line.startswith("data: "):
                continue  # blank separators and ": keep-alive" comments
            events.append(line[len("data: "):])
            if events[-1] == "[DONE]":
                return r.status, events, False
            if drop_after is not None and len(events) >= drop_after:
                r.close()  # with conn.close() below: the socket is gone mid-stream
                return r.status, events, True
    finally:
        conn.close()


def error_of(status, text):
    try:
        e = json.loads(text)["error"]
        return e if isinstance(e, dict) and "message" in e and "type" in e else None
    except (ValueError, KeyError, TypeError):
        return None


def stream_text(events, chat):
    """Concatenated text of SSE events and the finish reason of the last choice."""
    text, finish = "", None
    for ev in events:
        if ev == "[DONE]":
            break
        j = json.loads(ev)
        if "error" in j:
            raise RuntimeError(f"error event: {ev}")
        for c in j.get("choices", []):
            text += (c.get("delta", {}).get("content") or "") if chat else c.get("text", "")
            finish = c.get("finish_reason") or finish
    return text, finish


def metrics(port):
    status, text = http_request(port, "GET", "/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"/metrics status {status}")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# ---------------------------------------------------------------------------------------------

def start_server(args, model, kv, workdir):
    log = open(os.path.join(workdir, "serve.log"), "w")
    cmd = [args.cqkv, "serve", "-m", model, "--kv", kv, "--host", "127.0.0.1", "--port", "0",
           "-t", "2", "--kv-memory", "64MiB", "--shutdown-timeout", "5"]
    print("starting: " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    found = {}

    def read_url():
        for line in proc.stdout:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                found["port"] = int(m.group(1))
                break
        for _ in proc.stdout:  # keep draining so the server never blocks on stdout
            pass

    threading.Thread(target=read_url, daemon=True).start()
    deadline = time.time() + 30
    while time.time() < deadline and "port" not in found and proc.poll() is None:
        time.sleep(0.05)
    if "port" not in found:
        raise RuntimeError(f"server printed no 'listening on http://127.0.0.1:PORT' line (exit "
                           f"{proc.poll()}); see {log.name}")
    port = found["port"]
    while time.time() < deadline:
        try:
            if http_request(port, "GET", "/health", timeout=2)[0] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("GET /health never answered 200")


def make_jobs(port, expected, ctx_len):
    """The 32 clients, 16 of them streaming: (name, function returning (ok, detail))."""
    jobs = []

    def greedy(prompt, stream):
        body = {"model": "stories260K", "prompt": prompt, "max_tokens": N_GREEDY, "temperature": 0}
        if stream:
            body["stream"] = True
            status, events, _ = sse_request(port, "/v1/completions", body)
            if status != 200:
                return False, f"status {status}: {events[:1]}"
            if events[-1:] != ["[DONE]"]:
                return False, f"stream did not end with [DONE]: {events[-2:]}"
            text, finish = stream_text(events, chat=False)
        else:
            status, raw = http_request(port, "POST", "/v1/completions", body)
            if status != 200:
                return False, f"status {status}: {raw[:300]}"
            j = json.loads(raw)
            text, finish = j["choices"][0]["text"], j["choices"][0]["finish_reason"]
            u = j["usage"]
            if u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"] or \
                    not 0 <= u["completion_tokens"] <= N_GREEDY or j["object"] != "text_completion":
                return False, f"bad usage/object: {raw[:300]}"
        ok = text == expected[prompt] and finish in ("stop", "length")
        return ok, f"finish {finish}, text {text!r}" + ("" if ok else f" != generate's {expected[prompt]!r}")

    for i, p in enumerate(PROMPTS):
        for rep in range(2):
            jobs.append((f"greedy[{i}.{rep}]", lambda p=p: greedy(p, False)))
            jobs.append((f"greedy-stream[{i}.{rep}]", lambda p=p: greedy(p, True)))

    def sampled(seed, stream):
        body = {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.8, "top_k": 40,
                "seed": seed, "stream": stream}
        if stream:
            status, events, _ = sse_request(port, "/v1/completions", body)
            return status == 200 and events[-1:] == ["[DONE]"], f"status {status}, {len(events)} events"
        status, raw = http_request(port, "POST", "/v1/completions", body)
        return status == 200 and json.loads(raw)["choices"][0]["finish_reason"] in ("stop", "length"), \
            f"status {status}: {raw[:200]}"

    jobs.append(("sampled", lambda: sampled(7, False)))
    for s in range(3):
        jobs.append((f"sampled-stream[{s}]", lambda s=s: sampled(s, True)))

    def dropped(k):
        body = {"prompt": "Once upon a time", "max_tokens": ctx_len // 2, "ignore_eos": True,
                "temperature": 0, "stream": True}
        status, events, was_dropped = sse_request(port, "/v1/completions", body, drop_after=2)
        return status == 200 and len(events) >= 1, f"status {status}, dropped {was_dropped} after {len(events)} events"

    for k in range(4):
        jobs.append((f"drop-mid-stream[{k}]", lambda k=k: dropped(k)))

    def chat(stream):
        body = {"messages": [{"role": "system", "content": "You tell stories."},
                             {"role": "user", "content": "Tell me about a cat."}],
                "max_tokens": 16, "temperature": 0, "stream": stream}
        if stream:
            status, events, _ = sse_request(port, "/v1/chat/completions", body)
            if status != 200 or events[-1:] != ["[DONE]"]:
                return False, f"status {status}: {events[:2]}"
            first = json.loads(events[0])
            ok = first["object"] == "chat.completion.chunk" and \
                first["choices"][0]["delta"].get("role") == "assistant"
            return ok, f"{len(events)} events, first {events[0][:120]}"
        status, raw = http_request(port, "POST", "/v1/chat/completions", body)
        if status != 200:
            return False, f"status {status}: {raw[:300]}"
        msg = json.loads(raw)["choices"][0]["message"]
        return msg["role"] == "assistant" and isinstance(msg["content"], str), raw[:200]

    jobs.append(("chat", lambda: chat(False)))
    jobs.append(("chat-stream", lambda: chat(True)))

    def bad(path, body, want_status, want_param=None):
        def f():
            status, raw = http_request(port, "POST", path, body)
            e = error_of(status, raw)
            ok = status == want_status and e is not None and \
                (want_param is None or e.get("param") == want_param)
            return ok, f"status {status} (want {want_status}), {raw[:160]}"
        return f

    too_long = "Once upon a time there was a little girl who loved to play. " * 120
    jobs += [
        ("bad-json", bad("/v1/completions", b'{"prompt": "Once', 400)),
        ("bad-type-max_tokens", bad("/v1/completions", {"prompt": "Hi", "max_tokens": "x"}, 400, "max_tokens")),
        ("max_tokens-0", bad("/v1/completions", {"prompt": "Hi", "max_tokens": 0}, 400, "max_tokens")),
        ("unknown-role", bad("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]},
                             400, "messages[0].role")),
        ("prompt-over-context", bad("/v1/completions", {"prompt": too_long, "max_tokens": 4}, 400)),
        ("body-over-limit", bad("/v1/completions",
                                json.dumps({"prompt": "x" * (1 << 21)}).encode(), 413)),
    ]
    return jobs


def run_load(port, jobs, checks):
    results = {}
    barrier = threading.Barrier(len(jobs))

    def client(name, fn):
        try:
            barrier.wait(timeout=10)
            results[name] = fn()
        except Exception as e:  # a client's failure is a check failure, never a hang
            results[name] = (False, f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=j, daemon=True) for j in jobs]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, REQUEST_TIMEOUT + 15 - (time.time() - t0)))
    for name, _ in jobs:
        ok, detail = results.get(name, (False, "client did not finish in time"))
        checks.check(name, ok, detail)
    print(f"{len(jobs)} concurrent clients in {time.time() - t0:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cqkv", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()

    try:
        help_ok = subprocess.run([args.cqkv, "serve", "--help"], capture_output=True,
                                 timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        help_ok = False
    if not help_ok:
        print(f"skipped: serve not available (`{args.cqkv} serve --help` failed)")
        return 0

    checks = Checks()
    workdir = os.path.join(os.path.abspath(args.workdir), "test_load")
    os.makedirs(workdir, exist_ok=True)
    model = os.path.join(os.path.abspath(args.shared), *MODEL)
    data = os.path.join(os.path.abspath(args.shared), *CALIB_DATA)
    for f in (model, data):
        if not os.path.exists(f):
            checks.check("shared data", False, f"missing {f}")
            return checks.finish()

    proc = None

    def watchdog():
        print(f"[FAIL] watchdog: test still running after {WATCHDOG_S:.0f} s", flush=True)
        if proc is not None and proc.poll() is None:
            proc.kill()
        os._exit(1)

    timer = threading.Timer(WATCHDOG_S, watchdog)
    timer.daemon = True
    timer.start()
    t0 = time.time()
    try:
        cqcb = os.path.join(workdir, "s260k.cqcb")
        run([args.cqkv, "calibrate", "-m", model, "--data", f"{data}:0:20", "--config", "2c4b",
             "--tokens", "4x64", "-o", cqcb, "-q"], timeout=60)
        kv = f"cq:{cqcb}"
        expected = {}
        for p in PROMPTS:
            out = run([args.cqkv, "generate", "-m", model, "-p", p, "-n", str(N_GREEDY), "--temp", "0",
                       "--kv", kv, "-t", "2"], timeout=30)
            if not out.startswith(p):
                checks.check(f"generate[{p}]", False, f"output does not start with the prompt: {out[:100]!r}")
            expected[p] = out[len(p):].removesuffix("\n")
        print(f"calibration + {len(PROMPTS)} reference generations: {time.time() - t0:.1f} s", flush=True)

        proc, port = start_server(args, model, kv, workdir)
        checks.check("health", True, f"port {port}, up after {time.time() - t0:.1f} s")
        status, raw = http_request(port, "GET", "/v1/models")
        checks.check("models", status == 200 and json.loads(raw)["data"][0]["object"] == "model", raw[:200])
        ctx_len = 512  # stories260K's context
        jobs = make_jobs(port, expected, ctx_len)
        checks.check("32 clients", len(jobs) == 32, f"{len(jobs)} jobs")
        run_load(port, jobs, checks)

        # Cancelled streams free their pages a little after the client is gone.
        deadline, m = time.time() + 10, {}
        while time.time() < deadline:
            m = metrics(port)
            if m.get("cqkv_sequences_running") == 0 and m.get("cqkv_sequences_queued") == 0 and \
                    m.get("cqkv_kv_pages_used") == 0:
                break
            time.sleep(0.2)
        keys = ("cqkv_sequences_running", "cqkv_sequences_queued", "cqkv_kv_pages_used",
                "cqkv_kv_pages_total", "cqkv_requests_finished_total", "cqkv_generation_tokens_total")
        checks.check("metrics settle to idle",
                     m.get("cqkv_sequences_running") == 0 and m.get("cqkv_sequences_queued") == 0
                     and m.get("cqkv_kv_pages_used") == 0 and m.get("cqkv_kv_pages_total", 0) > 0,
                     ", ".join(f"{k}={m.get(k)}" for k in keys))
        status, raw = http_request(port, "GET", "/health")
        checks.check("health after load", status == 200, raw)

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
            checks.check("SIGTERM exits 0", rc == 0, f"exit code {rc}")
        except subprocess.TimeoutExpired:
            checks.check("SIGTERM exits 0", False, "still running 20 s after SIGTERM")
    except Exception as e:
        checks.check("run", False, f"{type(e).__name__}: {e}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        timer.cancel()
    print(f"test_load: {time.time() - t0:.1f} s; server log: {os.path.join(workdir, 'serve.log')}")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
