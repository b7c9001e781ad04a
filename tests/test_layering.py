"""The package's arrows point one way (STYLE.md): api never imports torch or the engine's runner,
engine never imports fastapi/pydantic, data never imports torch or other parts of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "codecomplete"

FORBIDDEN = {
    "api": (
        "torch",
        "transformers",
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


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_point_one_way(part):
    bad = []
    for path in sorted((PKG / part).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[part]):
                bad.append(f"{path.relative_to(PKG)} imports {name}")
    assert not bad, "\n".join(bad)
