"""Arrows point one way: every import in ``prunehess/`` (function bodies included) follows the layer order.

The layers, top to bottom (``docs/DESIGN.md`` draws them); a module may import its own package and any package of
a lower layer, nothing else:

    __main__
    cli
    geometry
    pipeline, training
    analyses
    plots
    checkpoints, models, data, estimators, layout, reference
    operators
    storage, options, devices
    errors, _version, _lazy

The test reads the source with ``ast`` (it imports nothing), resolves relative imports and ``from pkg import
module``, and fails listing every arrow against the order, and every import cycle between modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "prunehess"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("geometry",),
    ("pipeline", "training"),
    ("analyses",),
    ("plots",),
    ("checkpoints", "models", "data", "estimators", "layout", "reference"),
    ("operators",),
    ("storage", "options", "devices"),
    ("errors", "_version", "_lazy"),
)
"""``prunehess.<name>`` → its layer; ``prunehess`` itself (the library's re-exports) stands above them all."""

ALLOWED: dict[tuple[str, str], str] = {}
"""Arrows allowed against the order: ``(importer, imported)`` module names → the reason. None are needed today."""


def _layer_of(module: str) -> int:
    parts = module.split(".")
    if parts == ["prunehess"]:
        return -1
    for depth, names in enumerate(LAYERS):
        if parts[1] in names:
            return depth
    raise AssertionError(f"{module}: its package {parts[1]!r} has no layer; add it to LAYERS (and docs/DESIGN.md)")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``prunehess`` modules ``name`` imports anywhere in its source (as the deepest known module named)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, path.name == "__init__.py")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("prunehess") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_arrow_follows_the_layer_order():
    wrong = []
    for importer, targets in sorted(_graph().items()):
        for target in sorted(targets):
            if _package(importer) == _package(target) and importer != "prunehess":
                continue  # inside one package: only cycles are wrong (below)
            if _layer_of(target) > _layer_of(importer) or (importer, target) in ALLOWED:
                continue
            if _layer_of(importer) == -1:
                continue  # the top-level package re-exports the library
            wrong.append(f"{importer} -> {target}")
    assert not wrong, "imports against the layer order (see tests/structure/test_layers.py):\n" + "\n".join(wrong)


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str]:
    """A shortest cycle through ``start``, or ``[]``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    nxt.append(target)
        frontier = nxt
    return []


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own modules is the package's public face, not an arrow between modules
    edges = {m: {t for t in ts if not (m == _package(t) or m == "prunehess")} for m, ts in graph.items()}
    cycles = {tuple(c) for m in edges if (c := _cycle_from(edges, m))}
    shown = sorted({" -> ".join(c) for c in cycles})
    assert not shown, "import cycles (function-level imports count):\n" + "\n".join(shown)


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from prunehess.plots import esd\n    import prunehess.layout\n")
    known = {"prunehess.plots", "prunehess.plots.esd", "prunehess.layout"}
    assert _imports("prunehess.fake", source, known) == {"prunehess.plots.esd", "prunehess.layout"}


def test_every_package_has_a_layer():
    for name in _modules():
        _layer_of(name)
