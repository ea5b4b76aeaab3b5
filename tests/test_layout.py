"""Imports point one way, from the foundations up to the tooling, and no module imports itself back.

Layers, lowest first (a module may import its own layer's modules and any lower layer's):

0 foundations: errors, config, paths, atomic, devices, audio, mel
1 layers
2 models (and checkpoint, which rebuilds them; msst, which imports community checkpoints)
3 data, losses, diffusion
4 the training engine (train) and separation (inference)
5 evaluate (separates and scores songs) and compare (paired statistics of evaluations)
6 recipes (each trains with the engine and evaluates by separating)
7 tooling: runs, report, plots, widgets, cli and the ``__main__`` entry points
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftlib"
LAYERS = [
    ("ftlib", "ftlib.errors", "ftlib.config", "ftlib.paths", "ftlib.atomic", "ftlib.devices", "ftlib.audio", "ftlib.mel"),
    ("ftlib.layers",),
    ("ftlib.models", "ftlib.checkpoint", "ftlib.msst"),
    ("ftlib.data", "ftlib.losses", "ftlib.diffusion"),
    ("ftlib.train", "ftlib.separation"),
    ("ftlib.evaluate", "ftlib.compare"),
    ("ftlib.recipes",),
    ("ftlib.runs", "ftlib.report", "ftlib.plots", "ftlib.widgets", "ftlib.cli"),
]


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    if module.endswith("__main__"):
        return len(LAYERS) - 1
    best = max((prefix for layer in LAYERS for prefix in layer if module == prefix or module.startswith(prefix + ".")),
               key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def _imports(module: str) -> set[str]:
    """The ftlib modules ``module`` imports, at module level or inside functions."""
    found = set()
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = sorted(m for m in GRAPH[module] if _layer(m) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports higher layers: " + \
        ", ".join(f"{m} (layer {_layer(m)})" for m in upward)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(GRAPH[module]):
            assert state.get(other) != 1, "import cycle: " + " -> ".join([*path, module, other])
            if other not in state:
                visit(other, [*path, module])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [])


def test_layers_are_assigned_by_the_longest_prefix():
    assert _layer("ftlib.layers.attention") < _layer("ftlib.recipes.separation")
    assert _layer("ftlib.train.__main__") == len(LAYERS) - 1 and _layer("ftlib.data.cache") == 3
