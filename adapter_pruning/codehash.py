"""Code hashes derived from the source: what a workflow script runs of this package, found with ``ast``.

A rule's ``params`` carry :func:`script_code_hash` of its script, so editing any package module the
script can reach (directly or through other package modules, imports inside functions included)
reruns that rule and what depends on it, and editing anything else (a document, the CLI, another
rule's stage) reruns nothing. A new import is covered without anyone editing a rule.

Standard library only: the Snakefile calls this while it builds the DAG (dry runs included).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

__all__ = ["PACKAGE", "import_closure", "script_code_hash"]

PACKAGE = "adapter_pruning"
_ROOT = Path(__file__).resolve().parent  # the package folder


def _module_file(name: str) -> Path | None:
    """The source file of package module ``name`` (dotted, starting with ``adapter_pruning``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = _ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> tuple[str, str]:
    """``(module name, package it resolves relative imports against)`` of a package source file."""
    rel = path.resolve().relative_to(_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imported(tree: ast.AST, package: str | None) -> set[str]:
    """Dotted names of package modules an AST imports (anywhere, including inside functions)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue  # a relative import outside the package: not ours
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
    expanded = set()
    for name in names:  # importing a.b.c also runs a/__init__ and a/b/__init__
        parts = name.split(".")
        expanded.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {n for n in expanded if _module_file(n) is not None}


@functools.cache
def import_closure(script: str | Path) -> tuple[Path, ...]:
    """Every package source file that ``script`` can import, transitively, sorted.

    ``script`` is a workflow script (outside the package) or a package module's file.
    """
    script = Path(script).resolve()
    todo = [script]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_direct_imports(path))
    return tuple(sorted(p for p in seen if _ROOT in p.parents))


@functools.cache
def _direct_imports(path: Path) -> tuple[Path, ...]:
    """The package source files ``path`` imports directly (parsed once per process: the workflow hashes
    a dozen scripts whose closures share most modules)."""
    package = _module_name(path)[1] if _ROOT in path.parents else None
    tree = ast.parse(path.read_text(), filename=str(path))
    return tuple(_module_file(name) for name in _imported(tree, package))


@functools.cache
def script_code_hash(script: str | Path) -> str:
    """Short sha256 over the package modules in :func:`import_closure` of ``script`` (names and bytes)."""
    h = hashlib.sha256()
    for path in import_closure(script):
        h.update(path.relative_to(_ROOT.parent).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
