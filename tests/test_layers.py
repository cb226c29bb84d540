"""The package's layers: every module imports only from its own layer or the ones below.

The README's Layout section draws the same picture. A module that needs
something from above is a sign the code sits in the wrong place; the few
deliberate exceptions (lazy imports that build on a higher layer on demand)
are listed in ``UPWARD`` with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fastpeewee"

# Lowest first. A module belongs to the first entry that is a prefix of its name.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "contracts", "errors", "cursor", "bridge", "backoff"),
    ("drivers",),
    ("pool",),
    ("state",),
    ("fast",),
    ("transactions", "tracing", "retries", "health", "locks", "forks"),
    ("database", "replicas"),
    ("backends", "model"),
    ("db_url", "schema", "integrations", "compat", "otel", "testing", "migrations"),
    ("__init__", "mypy"),
]

# (importer, imported): why it may look up.
UPWARD = {
    ("database", "model"): "db.Model builds an AsyncModel base class on first use",
    ("replicas", "db_url"): "a replica given as a URL opens as db_url.connect opens it",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _layer(name: str) -> int:
    head = name.split(".")[0]
    for index, members in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"{name} is on no layer: add it to LAYERS (and the README's Layout)")


def _runtime_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it runs (not for type checking)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in skipped or not node.level:
            continue
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        target = [*base, *(node.module.split(".") if node.module else [])]
        if node.module is None:  # from . import x: x may be a module
            found.update(".".join([*target, alias.name]) for alias in node.names)
        else:
            found.add(".".join(target))
    return {name for name in found if name and name.split(".")[0] in _all_heads()}


def _all_heads() -> set[str]:
    return {p.with_suffix("").name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}


def test_every_module_is_on_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        _layer(_module_name(path))


def test_imports_only_go_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for imported in sorted(_runtime_imports(path)):
            if _layer(imported) > _layer(importer):
                key = (importer.split(".")[0], imported.split(".")[0])
                if key not in UPWARD:
                    upward.append(f"{importer} imports {imported}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_the_listed_exceptions_are_still_needed() -> None:
    seen: set[tuple[str, str]] = set()
    for path in PACKAGE.rglob("*.py"):
        importer = _module_name(path).split(".")[0]
        seen.update((importer, imported.split(".")[0]) for imported in _runtime_imports(path))
    assert set(UPWARD) <= seen, f"no longer needed: {set(UPWARD) - seen}"
