"""The default data: "API search" pairs harvested from real docstrings.

Every machine that can run the pipeline has the Python standard library, so
its docstrings are human-written text available offline. Sources are parsed
with `ast`, never imported, so harvesting has no side effects and depends only
on the files on disk: the same environment always yields the same pairs.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
import sysconfig
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.progress import Progress

# Tests, demos and vendored code: not API documentation a user searches.
_SKIP_PARTS = {"test", "tests", "idle_test", "idlelib", "lib2to3", "turtledemo",
               "ensurepip", "__pycache__", "site-packages", "dist-packages",
               "_vendor", "vendor"}


def source_roots(packages: list[str]) -> list[tuple[str, Path]]:
    """(module prefix, directory) pairs to harvest: the stdlib, then packages."""
    roots = [("", Path(sysconfig.get_paths()["stdlib"]))]
    for name in packages:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a dotted name whose parent is missing, an empty name
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise PipelineError(f"data.packages: {name!r} is not an installed package (a package "
                                "directory whose docstrings can be harvested); remove it or install it.")
        roots.append((name, Path(list(spec.submodule_search_locations)[0])))
    return roots


def fingerprint(packages: list[str]) -> str:
    """What the harvest depends on besides its config: Python and package paths (resolved: one
    environment reached through a symlink, as torchrun's script does, is the same files)."""
    return "|".join([sys.version] + [f"{p}={d.resolve()}" for p, d in source_roots(packages)])


def _module_name(prefix: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(([prefix] if prefix else []) + parts)


def _split_docstring(doc: str) -> tuple[str, str]:
    """Summary line (first paragraph, joined) and the rest of the docstring."""
    paragraphs = doc.strip().split("\n\n", 1)
    summary = " ".join(line.strip() for line in paragraphs[0].splitlines())
    body = paragraphs[1].strip() if len(paragraphs) > 1 else ""
    return summary, body


def _documented(tree: ast.Module, module: str):
    """(qualified name, docstring) of each documented class, function and method."""
    stack = [(module, node) for node in tree.body]
    while stack:
        scope, node = stack.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("_"):
                continue
            qualname = f"{scope}.{node.name}"
            doc = ast.get_docstring(node)
            if doc:
                yield qualname, doc
            if isinstance(node, ast.ClassDef):
                stack.extend((qualname, child) for child in node.body)


def harvest(packages: list[str], min_summary_words: int, min_body_chars: int,
            max_body_chars: int) -> list[dict]:
    """Pairs {anchor, positive} in a stable order (a process harvests each setting once: the
    files it reads do not change under it).

    Queries shared by several APIs ("Return self==value.") are ambiguous as
    search queries, so every summary that occurs more than once is dropped.
    """
    return list(_harvest(tuple(packages), min_summary_words, min_body_chars, max_body_chars))


@functools.lru_cache(maxsize=4)
def _harvest(packages: tuple[str, ...], min_summary_words: int, min_body_chars: int,
             max_body_chars: int) -> tuple[dict, ...]:
    files = [(prefix, root, path) for prefix, root in source_roots(list(packages))
             for path in sorted(root.rglob("*.py"))
             if not any(part in _SKIP_PARTS or part.startswith("test_") for part in path.relative_to(root).parts)]
    pairs = []
    with Progress(len(files), "harvest docstrings", "file") as progress:
        for prefix, root, path in files:
            progress.update()
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for qualname, doc in _documented(tree, _module_name(prefix, root, path)):
                summary, body = _split_docstring(doc)
                if len(summary.split()) < min_summary_words or len(body) < min_body_chars:
                    continue
                pairs.append({"anchor": summary,
                              "positive": f"{qualname}\n{body[:max_body_chars]}"})
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair["anchor"]] = counts.get(pair["anchor"], 0) + 1
    return tuple(pair for pair in pairs if counts[pair["anchor"]] == 1)
