"""Every ``python`` block of the documentation site runs.

The pages of docs/ run one after another, each page in one namespace, in a
temp directory (their SQLite files land there), the way a reader would paste
them into ``python -m asyncio``: a block with top-level ``await`` runs in an
event loop of its own (``asyncio.run``), other blocks run in plain sync code.

Markers, written as HTML comments on the line before a block (invisible on the site):

- ``<!-- docs-test: postgres -->``: the block runs with ``DATABASE_URL`` naming
  the test PostgreSQL (tests/servers.py), as deployment code reads it.
- ``<!-- docs-test: skip REASON -->``: the block is not run; the reason is
  required, and shows in pytest's summary.

A block opened as ```` ```python title="sql_app/models.py" ```` (or ``ini``,
``toml``) is a file of the tutorial: it is written to that path (importable
from the temp directory) instead of being run. Written files named
``test_*.py`` are then run by pytest in a subprocess, in that directory, and
must pass.

docs/migrating-from-peewee-async.md has its own runner, tests/compat/test_docs.py.
The generated benchmark tables and chart are checked against the saved JSON here too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchmarks import chart

import fastpeewee
from fastpeewee import AsyncDatabase

DOCS = Path(__file__).resolve().parents[1] / "docs"
OWN_RUNNER = {"migrating-from-peewee-async.md"}  # tests/compat/test_docs.py
FENCE = re.compile(
    r"(?:^<!-- docs-test: (?P<marker>[^>]*?) -->\n)?"
    r"^```(?P<lang>python|ini|toml)(?: title=\"(?P<title>[^\"]+)\")?\n(?P<code>.*?)^```$",
    flags=re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    page: str
    index: int
    code: str
    title: str | None
    marker: str | None

    @property
    def name(self) -> str:
        return f"{self.page}[block {self.index}]"


def page_blocks(path: Path) -> list[Block]:
    page = path.relative_to(DOCS).as_posix()
    matches = [m for m in FENCE.finditer(path.read_text()) if m["lang"] == "python" or m["title"]]
    return [Block(page, i, m["code"], m["title"], m["marker"]) for i, m in enumerate(matches)]


PAGES = sorted(
    p.relative_to(DOCS).as_posix()
    for p in DOCS.rglob("*.md")
    if p.name not in OWN_RUNNER and "assets" not in p.parts
)


def test_the_site_has_runnable_examples() -> None:
    blocks = [b for page in PAGES for b in page_blocks(DOCS / page)]
    assert len(blocks) >= 35
    for block in blocks:
        marker = block.marker or ""
        assert marker in ("", "postgres") or re.fullmatch(r"skip \S.{10,}", marker), (
            f"{block.name}: unknown marker or skip without a reason: {marker!r}"
        )
    run = [b for b in blocks if not (b.marker or "").startswith("skip")]
    assert len(run) >= 0.8 * len(blocks), "most blocks must run, not be skipped"


def _postgres_url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("postgres_server")
    params = server.connect_params
    auth = params["user"] + (f":{params['password']}" if params.get("password") else "")
    return f"postgresql://{auth}@{params['host']}:{params['port']}/{server.database}"


def _run(block: Block, namespace: dict[str, object]) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(block.code, block.name, "exec", flags=flags)
    result = eval(code, namespace)  # a coroutine when the block awaits at top level
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.parametrize("page", PAGES)
def test_page_blocks_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    blocks = page_blocks(DOCS / page)
    if not blocks:
        pytest.skip(f"{page} has no python block")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    before = set(sys.modules)
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('/', '_')[:-3]}"}
    skipped = []
    try:
        for block in blocks:
            if block.title:
                target = tmp_path / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code)
                continue
            if block.marker and block.marker.startswith("skip"):
                skipped.append(f"{block.name}: {block.marker[5:]}")
                continue
            if block.marker == "postgres":
                monkeypatch.setenv("DATABASE_URL", _postgres_url(request))
            _run(block, namespace)
            monkeypatch.delenv("DATABASE_URL", raising=False)
    finally:
        for value in list(namespace.values()):
            if isinstance(value, AsyncDatabase):
                value.close_all()
        for module in set(sys.modules) - before:  # the tutorial's package, imported from tmp
            file = getattr(sys.modules[module], "__file__", None) or ""
            if file.startswith(str(tmp_path)):
                del sys.modules[module]
    tests = [b.title for b in blocks if b.title and Path(b.title).name.startswith("test_")]
    if tests:
        # This checkout's fastpeewee, and exactly the plugins the page asks for
        # (pytest-asyncio and fastpeewee's, loaded by name rather than through
        # entry points an older editable install may lack).
        package_root = str(Path(fastpeewee.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": package_root, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        plugins = ["-p", "pytest_asyncio.plugin", "-p", "fastpeewee_pytest"]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins, *tests],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{page}'s tests failed:\n{done.stdout}\n{done.stderr}"
        assert " passed" in done.stdout
    for reason in skipped:  # reported, never silent
        print(f"not run: {reason}")


def test_benchmark_tables_come_from_the_saved_runs(tmp_path: Path) -> None:
    written = chart.write(out=tmp_path)
    assert sorted(p.name for p in written) == [
        "benchmarks-history.md",
        "benchmarks-table.md",
        "benchmarks.svg",
    ]
    runs = chart.load_runs()
    newest = runs[-1]
    fast = newest.ratio("postgres", "W1", "fastpeewee")
    assert fast is not None
    table = (tmp_path / "benchmarks-table.md").read_text()
    assert "| PostgreSQL W1 get by primary key |" in table
    assert f"{fast:.2f}" in table
    svg = (tmp_path / "benchmarks.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # one bar per peer and workload that did not fail
    cells = [
        (b, w, p)
        for b, w, _ in newest.rows()
        for p, _, _ in newest.peers()
        if newest.ratio(b, w, p) is not None
    ]
    assert svg.count('<rect x="250"') == len(cells)
    assert f"fastpeewee: {fast:.2f}" in svg
    history = (tmp_path / "benchmarks-history.md").read_text()
    assert history.splitlines()[0].count("(") == len(runs) >= 2
    assert "| SQLite W1 get by primary key |" in history


def test_the_benchmarks_page_uses_the_generated_files() -> None:
    text = (DOCS / "benchmarks.md").read_text()
    for name in ("benchmarks-table.md", "benchmarks-history.md"):
        assert f'--8<-- "{name}"' in text
    assert "assets/benchmarks.svg" in text
