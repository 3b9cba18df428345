"""The package order that ``tap/__init__.py`` states holds: a module imports only from its own layer or
the layers before it (deferred imports inside functions included), so no loop hides behind one."""

import ast
from pathlib import Path

import pytest

import tap

TAP = Path(tap.__file__).parent
LAYERS = [("errors", "paths", "machine", "quiet"), ("llm",), ("tasks",), ("chains",), ("env",), ("collection",),
          ("search",), ("models", "losses", "metrics"), ("systems",), ("planning", "baselines"),
          ("cli", "collect", "pipeline", "integrations")]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tap."):
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("tap.")]
    return out


def test_every_package_is_in_a_layer():
    names = {p.stem if p.is_file() else p.name for p in TAP.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert names == set(RANK), f"add new packages to LAYERS (and to tap/__init__.py's order): {names ^ set(RANK)}"


@pytest.mark.parametrize("path", sorted(TAP.rglob("*.py")), ids=lambda p: str(p.relative_to(TAP)))
def test_imports_follow_the_layer_order(path):
    rel = path.relative_to(TAP)
    if rel.name == "__init__.py" and len(rel.parts) == 1:
        return
    own = RANK[rel.parts[0].removesuffix(".py")]
    bad = [m for m in _imports(path) if RANK[_top(m)] > own]
    assert not bad, f"{rel} (layer {own}) imports from a later layer: {bad}"
