#!/usr/bin/env python3
"""Fail when modules of a Rust crate import each other in a loop.

    tests/structure/import_loops.py [SRC_DIR]      (default: src)

Every `.rs` file under SRC_DIR is a module (`foo/mod.rs` is `foo`). A module depends on
another when it names it through a `crate::` path (in a `use` tree or inline, like
`crate::vend::Vendor`) or a `super::`/`self::`/child-module path in a `use`. A path is charged to the
longest module that prefixes it: `crate::vend::scope::check` is `vend::scope`, and
`crate::vend::Vendor` is `vend` (its `mod.rs`). Test code (from a `#[cfg(test)]` line on)
is left out: tests may reach anywhere. Prints every loop (a strongly connected group of
two or more modules, or a module using itself through a re-export) with the names that tie
it, and exits 1 when there is one; prints the module count and exits 0 otherwise.
`tests/structure/test_import_loops.py` runs it on a tree made to loop.
"""

import os
import re
import sys


def module_of(root, path):
    rel = os.path.relpath(path, root)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod" or rel == ["lib"] or rel == ["main"]:
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    """Source without comments, strings and test code."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def use_paths(tree):
    """Expand a use tree (`a::{b, c::{d, e}}`) into its paths."""
    tree = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z_0-9]*", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, body):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(body):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(body[start:i])
                start = i + 1
        parts.append(body[start:])
        for part in parts:
            if not part:
                continue
            if "{" in part:
                head, rest = part.split("{", 1)
                walk(prefix + [p for p in head.split("::") if p], rest[:-1])
            else:
                out.append(prefix + [p for p in part.split("::") if p])

    walk([], tree)
    return out


def references(module, text, modules):
    """(path, name) pairs this module's code names, paths absolute from the crate root."""
    refs = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for path in use_paths(m.group(1)):
            # `a::{self, b}` names `a` itself.
            path = [p for p in path[:1]] + [p for p in path[1:] if p != "self"]
            if not path:
                continue
            if path[0] == "crate":
                refs.append(path[1:])
            elif path[0] == "super":
                base = list(module)
                while path and path[0] == "super":
                    base = base[:-1]
                    path = path[1:]
                refs.append(base + path)
            elif path[0] == "self":
                refs.append(list(module) + [p for p in path[1:] if p != "self"])
            elif tuple(module) + (path[0],) in modules:
                # `use child::Item` in a parent names its own child module.
                refs.append(list(module) + path)
    for m in re.finditer(r"\bcrate((?:::[A-Za-z_][A-Za-z_0-9]*)+)", text):
        refs.append(m.group(1).split("::")[1:])
    return refs


def find_loops(root):
    modules = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                modules[module_of(root, path)] = path
    edges = {m: {} for m in modules}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            text = strip(fh.read())
        for ref in references(module, text, modules):
            target = None
            for n in range(len(ref), -1, -1):
                if tuple(ref[:n]) in modules:
                    target = tuple(ref[:n])
                    break
            # A module's own items, its children's declarations and the crate root are no tie.
            if target is None or target == () or target == module:
                continue
            name = "::".join(ref[len(target):]) or "(the module)"
            edges[module].setdefault(target, set()).add(name)
    # Tarjan's strongly connected components.
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            connect(v)
    return modules, edges, groups


def name(module):
    return "::".join(module) or "crate"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    modules, edges, groups = find_loops(root)
    if not groups:
        print(f"import loops: none among {len(modules)} modules of {root}")
        return 0
    for i, group in enumerate(groups, 1):
        print(f"import loop {i}: {', '.join(name(m) for m in group)}")
        members = set(group)
        for m in group:
            for target, names in sorted(edges[m].items()):
                if target in members:
                    print(f"  {name(m)} -> {name(target)}: {', '.join(sorted(names))}")
    print(f"{len(groups)} import loop(s) among {len(modules)} modules of {root}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
