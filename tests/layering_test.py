#!/usr/bin/env python3
"""The layering of src/: every `#include "dir/..."` points to the file's own layer or one below.

The layers and what each builds on directly live in ONE place, cmake/layers.txt, which CMakeLists.txt
also reads (one static library cqkv_<layer> per layer, linking exactly its listed layers). A layer may
include its own folder and, transitively, every layer it lists; public headers (include/cqkv/) count as
the layer that implements them. Fails naming each offending file and include. Also checks the table
itself (layers listed bottom to top, every src/ folder is a layer, every public header is mapped) and
that every quoted include of src/ and include/ names a file that exists.

Python standard library only. Usage: layering_test.py [--root SOURCE_DIR]
"""
import argparse
import os
import re
import sys

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
SOURCE_EXTS = (".h", ".cc")


def read_table(path):
    """Returns (layers in order, {layer: [direct deps]}, {public header: layer}, problems)."""
    order, deps, public, problems = [], {}, {}, []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            where = f"{path}:{n}"
            if fields[0] == "public":
                if len(fields) != 3:
                    problems.append(f"{where}: expected 'public <header> <layer>'")
                    continue
                public[fields[1]] = fields[2]
                continue
            layer, direct = fields[0], fields[1:]
            if layer in deps:
                problems.append(f"{where}: layer '{layer}' listed twice")
            for d in direct:
                if d not in deps:
                    problems.append(f"{where}: '{layer}' depends on '{d}', which is not a layer "
                                    "listed above it")
            order.append(layer)
            deps[layer] = [d for d in direct if d in deps]
    for header, layer in public.items():
        if layer not in deps:
            problems.append(f"{path}: public header {header} maps to unknown layer '{layer}'")
    return order, deps, public, problems


def closure(deps):
    """{layer: set of layers it may include}: itself plus everything below it in the table."""
    allowed = {}
    for layer, direct in deps.items():  # dict order is bottom to top
        s = {layer}
        for d in direct:
            s |= allowed[d]
        allowed[layer] = s
    return allowed


def source_files(top):
    for dirpath, _, names in os.walk(top):
        for name in sorted(names):
            if name.endswith(SOURCE_EXTS):
                yield os.path.join(dirpath, name)


def check(root):
    table = os.path.join(root, "cmake", "layers.txt")
    order, deps, public, problems = read_table(table)
    allowed = closure(deps)
    src = os.path.join(root, "src")
    inc = os.path.join(root, "include")

    with open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8") as f:
        if "cmake/layers.txt" not in f.read():
            problems.append("CMakeLists.txt does not read cmake/layers.txt: the libraries' links "
                            "and this check would disagree")

    folders = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    for d in folders:
        if d not in deps:
            problems.append(f"src/{d}/ is not a layer in cmake/layers.txt")
    for layer in order:
        if layer not in folders:
            problems.append(f"cmake/layers.txt: layer '{layer}' has no folder src/{layer}/")
    for path in source_files(os.path.join(inc, "cqkv")):
        rel = os.path.relpath(path, inc)
        if rel not in public:
            problems.append(f"include/{rel} is not mapped to a layer in cmake/layers.txt")

    def layer_of_include(target):
        if target in public:
            return public[target]
        head = target.split("/", 1)[0]
        return head if head in deps and "/" in target else None

    n_includes = 0
    for top, owner_of in ((src, lambda rel: rel.split(os.sep, 1)[0]),
                          (inc, lambda rel: public.get(rel.replace(os.sep, "/")))):
        for path in source_files(top):
            rel = os.path.relpath(path, top)
            shown = os.path.relpath(path, root)
            owner = owner_of(rel)
            if owner is None or owner not in allowed:
                continue  # reported above (unknown folder or unmapped header)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for m in INCLUDE_RE.finditer(text):
                target = m.group(1)
                line = text.count("\n", 0, m.start()) + 1
                n_includes += 1
                if not (os.path.exists(os.path.join(src, target)) or
                        os.path.exists(os.path.join(inc, target))):
                    problems.append(f"{shown}:{line}: #include \"{target}\" names no file of "
                                    "src/ or include/")
                    continue
                layer = layer_of_include(target)
                if layer is None:
                    problems.append(f"{shown}:{line}: #include \"{target}\" is not in a layer "
                                    "(use \"<layer>/<file>\")")
                elif layer not in allowed[owner]:
                    problems.append(
                        f"{shown}:{line}: #include \"{target}\": layer '{owner}' must not include "
                        f"layer '{layer}' (it may include: "
                        f"{', '.join(l for l in order if l in allowed[owner])})")
    return order, n_includes, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(here), help="source tree (default: ..)")
    args = ap.parse_args()
    order, n, problems = check(args.root)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"layering: {len(problems)} problem(s)")
        return 1
    print(f"layering: OK, {n} includes of src/ and include/ point down the layers of "
          f"cmake/layers.txt (bottom to top: {', '.join(order)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
