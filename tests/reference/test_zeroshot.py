#!/usr/bin/env python3
"""cqkv eval-tasks against a second path: the NumPy float64 reference model and an independent Python
reimplementation of the prompts and of lm-evaluation-harness's scoring.

Contracts used:
    CQKV eval-tasks --model M [--tokenizer T] --tasks A,B --limit N --data-dir D --dump OUT.jsonl --json OUT.json
        dump: one JSON object per request {"task","line","choice","gold","tokens","first_scored","loglik","greedy"}
        json: {"results": [{"task","n","acc","acc_norm",...}]}
    CQKV tokenize --model M --text-file F   one JSON array of ints, BOS first

Checks, per model (stories260K: 3 items of 5 tasks; cq-tiny: 1 item of 3 tasks, its 32k-vocabulary forward being
slower in NumPy):
  1. every request's loglik = sum of log_softmax(reference_forward(tokens[:-1]))[j-1, tokens[j]] over the scored
     tokens j, within 1e-3 nats (the engine is fp32 with a prefix shared through a replayed KV cache, the
     reference float64 from scratch; fp32 rounding over a few hundred tokens stays well below this);
  2. greedy flags agree wherever the reference's top-2 margin exceeds 1e-4;
  3. the tokens are the harness's: tokenize(context) + tokenize(context + continuation)[len(context tokens):],
     with (context, continuation) built here from the data files by the documented prompts;
  4. acc / acc_norm / ppl in the JSON equal the harness's rules applied here to the dumped logliks (acc_norm
     divides by len(choice) in characters).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import harness as H  # noqa: E402
import numpy as np  # noqa: E402

TOL_NATS = 1e-3
FILES = {"piqa": "piqa.jsonl", "arc_easy": "arc_easy.jsonl", "winogrande": "winogrande.jsonl",
         "hellaswag": "hellaswag_val_full.txt", "lambada": "lambada_openai.jsonl", "boolq": "boolq.jsonl"}
ACC_NORM = {"piqa", "arc_easy", "hellaswag"}


def hellaswag_pre(text):
    import re
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def requests(task, data_dir, limit):
    """[(context, continuation, choice_text)] per item and the gold index, as the documented prompts say."""
    path = os.path.join(data_dir, FILES[task])
    items = []
    if task == "hellaswag":
        lines = open(path, encoding="utf-8").read().split("\n")
        for i in range(limit):
            ctx, gold, ends = lines[6 * i], int(lines[6 * i + 1]), lines[6 * i + 2:6 * i + 6]
            c = hellaswag_pre(ctx)
            items.append(([(c, " " + hellaswag_pre(e), hellaswag_pre(e)) for e in ends], gold))
        return items
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(items) == limit:
                break
            d = json.loads(line)
            if task == "winogrande":
                items.append(([(o, " " + d["continuation"], d["continuation"]) for o in d["context_options"]],
                              d["gold"]))
            elif task == "lambada":
                items.append(([(d["context"], " " + d["continuation"], d["continuation"])], -1))
            else:
                suffix = {"piqa": "Answer:", "arc_easy": "\nAnswer:", "boolq": "\nAnswer:"}[task]
                items.append(([(d["query"] + suffix, " " + c, c) for c in d["choices"]], d["gold"]))
    return items


def ref_loglik(model, tokens, first):
    lp = R.log_softmax(R.forward(model, tokens[:-1]))
    js = np.arange(first, len(tokens))
    ll = float(lp[js - 1, np.asarray(tokens)[js]].sum())
    top2 = np.sort(lp[js - 1], axis=1)[:, -2:]
    greedy = bool(np.all(lp[js - 1].argmax(axis=1) == np.asarray(tokens)[js]))
    margin = float(np.min(top2[:, 1] - top2[:, 0]))
    return ll, greedy, margin


def check_model(suite, cq, work, label, model_path, extra, tasks, limit, data_dir):
    dump, out = os.path.join(work, f"{label}_dump.jsonl"), os.path.join(work, f"{label}.json")
    try:
        cq.run(["eval-tasks", "--model", model_path, *extra, "--tasks", ",".join(tasks), "--limit", limit,
                "--data-dir", data_dir, "--dump", dump, "--json", out, "-q", "-t", 2])
    except H.CqkvError as e:
        suite.fail(f"{label}: cqkv eval-tasks", str(e))
        return
    rows = [json.loads(l) for l in open(dump)]
    res = {r["task"]: r for r in json.load(open(out))["results"]}
    model = R.load_model(model_path)
    worst, greedy_bad = 0.0, []
    for r in rows:
        ll, greedy, margin = ref_loglik(model, r["tokens"], r["first_scored"])
        worst = max(worst, abs(ll - r["loglik"]))
        if margin > 1e-4 and greedy != r["greedy"]:
            greedy_bad.append((r["task"], r["line"], r["choice"]))
    suite.close_check(f"{label}: {len(rows)} request logliks vs float64 reference", worst, TOL_NATS,
                      "max |diff| nats")
    suite.check(f"{label}: greedy flags", not greedy_bad, f"mismatches {greedy_bad[:4]}")

    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    for task in tasks:
        items = requests(task, data_dir, limit)
        got = by_task.get(task, [])
        # 3. token split of the first item's requests
        k = 0
        split_ok, detail = True, ""
        for (ctx, cont, _), r in zip(items[0][0], got):
            files = []
            for name, text in (("ctx", ctx), ("whole", ctx + cont)):
                p = os.path.join(work, f"{label}_{task}_{k}_{name}.txt")
                with open(p, "w", encoding="utf-8") as f:
                    f.write(text)
                files.append(p)
            c_ids, w_ids = (cq.tokenize(model_path, p, extra) for p in files)
            want = c_ids + w_ids[len(c_ids):]
            if want != r["tokens"] or r["first_scored"] != len(c_ids):
                split_ok, detail = False, f"choice {k}: want {want[-8:]} first {len(c_ids)}, got {r['tokens'][-8:]}"
            k += 1
        suite.check(f"{label} {task}: tokens are the harness's context/continuation split", split_ok and k > 0,
                    detail or f"{k} requests")
        # 4. scoring rules
        acc, acc_norm, lls, pos = 0, 0, [], 0
        for choices, gold in items:
            rs = got[pos:pos + len(choices)]
            pos += len(choices)
            ll = np.array([r["loglik"] for r in rs])
            if task == "lambada":
                acc += rs[0]["greedy"]
                lls.append(ll[0])
                continue
            acc += int(np.argmax(ll)) == gold
            acc_norm += int(np.argmax(ll / np.array([float(len(c[2])) for c in choices]))) == gold
        n = len(items)
        e = res.get(task, {})
        ok = e.get("n") == n and abs(e.get("acc", -1) - acc / n) < 1e-12
        if task in ACC_NORM:
            ok = ok and abs(e.get("acc_norm", -1) - acc_norm / n) < 1e-12
        if task == "lambada":
            ok = ok and abs(e.get("ppl", -1) / math.exp(-np.mean(lls)) - 1) < 1e-9
        suite.check(f"{label} {task}: acc/acc_norm/ppl from the harness's rules", ok,
                    f"json {json.dumps({k: e.get(k) for k in ('n', 'acc', 'acc_norm', 'ppl')})}, "
                    f"here acc {acc}/{n} acc_norm {acc_norm}/{n}")


def main():
    args = H.parse_args(__doc__)
    suite = H.Suite("test_zeroshot")
    work = H.workdir_for(args, "test_zeroshot")
    data_dir = H.shared_path(args, "data", "zeroshot")
    st = H.shared_path(args, "models", "stories260K")
    cqt = H.shared_path(args, "models", "cq-tiny", "model.bin")
    llama_tok = H.shared_path(args, "tokenizers", "llama2.tokenizer.bin")
    if not os.path.isdir(data_dir) or not os.path.exists(os.path.join(st, "model.bin")):
        suite.skip("all", "shared data absent")
        return suite.finish()
    if args.ref_only:
        suite.skip("cqkv checks", "--ref-only")
        return suite.finish()
    cq = H.Cqkv(args.cqkv, args.timeout)
    if not cq.available:
        suite.fail("cqkv binary", cq.missing_reason())
        return suite.finish()
    check_model(suite, cq, work, "stories260K", os.path.join(st, "model.bin"),
                ["--tokenizer", os.path.join(st, "tokenizer.bin")],
                ["piqa", "arc_easy", "winogrande", "hellaswag", "lambada"], 3, data_dir)
    if os.path.exists(cqt) and os.path.exists(llama_tok):
        check_model(suite, cq, work, "cq-tiny", cqt, ["--tokenizer", llama_tok],
                    ["arc_easy", "winogrande", "lambada"], 1, data_dir)
    else:
        suite.skip("cq-tiny", "model or tokenizer absent")
    return suite.finish()


if __name__ == "__main__":
    sys.exit(main())
