"""The package's arrows point one way (STYLE.md): api never imports torch or the engine's core and
runner, engine never imports fastapi/pydantic, data never imports torch or other parts of the package.

Followed transitively: a module-level import of a module that (at module level, any number of hops
away) imports something forbidden counts, so api cannot reach `engine.core` through a helper. Imports
inside functions count only in the part's own files (they run only when called: `build_engine`
importing the engine's core lazily is what keeps the API torch-free). And no two modules of the
package import each other (directly or through others), even lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "codecomplete"

FORBIDDEN = {
    "api": (
        "torch",
        "transformers",
        "codecomplete.engine.core",
        "codecomplete.engine.runner",
        "codecomplete.training",
        "codecomplete.data",
    ),
    "engine": (
        "fastapi",
        "starlette",
        "pydantic",
        "codecomplete.api",
        "codecomplete.training",
        "codecomplete.data",
    ),
    "models": (
        "fastapi",
        "codecomplete.api",
        "codecomplete.engine",
        "codecomplete.training",
        "codecomplete.data",
    ),
    "training": ("fastapi", "codecomplete.api", "codecomplete.engine", "codecomplete.data"),
    "data": (
        "torch",
        "fastapi",
        "codecomplete.api",
        "codecomplete.engine",
        "codecomplete.training",
        "codecomplete.models",
    ),
    "eval": ("fastapi", "codecomplete.api", "codecomplete.training", "codecomplete.data"),
}


def _module(path: Path) -> str:
    parts = ["codecomplete", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """Absolute names imported by `path` (relative imports resolved; `from a import b` also gives
    `a.b`, which matters when b is a module). module_level_only: not inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return names


def _internal(name: str) -> list[str]:
    """The package modules that importing `name` executes: each parent package, then the module."""
    parts = name.split(".")
    return [m for m in (".".join(parts[: i + 1]) for i in range(len(parts))) if m in MODULES]


def _reach(module: str) -> dict[str, list[str]]:
    """Every name imported at import time of `module`, transitively, with the chain that reaches it."""
    chains: dict[str, list[str]] = {}
    todo = [(module, [module])]
    seen = {module}
    while todo:
        current, chain = todo.pop()
        for name in _imports(MODULES[current], module_level_only=True):
            chains.setdefault(name, chain + [name])
            for dep in _internal(name):
                if dep not in seen:
                    seen.add(dep)
                    todo.append((dep, chain + [dep]))
    return chains


def _forbidden(name: str, part: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN[part])


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_point_one_way(part):
    bad = []
    for path in sorted((PKG / part).rglob("*.py")):
        for name in _imports(path):
            if _forbidden(name, part):
                bad.append(f"{path.relative_to(PKG)} imports {name}")
        for name, chain in _reach(_module(path)).items():
            if _forbidden(name, part):
                bad.append(f"{path.relative_to(PKG)} reaches {name}: {' -> '.join(chain)}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_transitive_check_follows_hops():
    # api/app.py imports api/completions/router.py at module level, which imports api/body.py.
    chain = _reach("codecomplete.api.app")["codecomplete.api.body"]
    assert chain[0] == "codecomplete.api.app" and len(chain) >= 3


def test_no_import_circles():
    """No module imports itself through others (function-level imports included; a package's
    __init__ importing its own submodules is not a circle)."""
    graph = {}
    for mod, path in MODULES.items():
        deps = set()
        for name in _imports(path):
            deps.update(d for d in _internal(name) if d != mod and not mod.startswith(d + "."))
        graph[mod] = deps
    circles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, chain = stack.pop()
            for dep in graph[node]:
                if dep == start and not (start.startswith(node + ".") or node.startswith(start + ".")):
                    circles.append(" -> ".join(chain + [start]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, chain + [dep]))
    assert not circles, "\n".join(circles)
