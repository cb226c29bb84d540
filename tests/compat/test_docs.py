"""docs/migrating-from-peewee-async.md: every ``python`` block runs, against SQLite files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastpeewee import AsyncDatabase

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-peewee-async.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def test_the_page_has_runnable_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples create their SQLite files here
    namespace: dict[str, object] = {"__name__": f"doc_block_{index}"}
    try:
        exec(compile(BLOCKS[index], f"{DOC.name}[block {index}]", "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, AsyncDatabase):
                value.close_all()


DECISIONS = DOC.read_text().split("## 4. Every difference, decided", 1)[1]


def test_every_difference_names_a_test_that_exists() -> None:
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", DECISIONS)
    assert len(named) >= 25
    tests = Path(__file__).resolve().parents[1]
    for module, function in named:
        [path] = tests.rglob(module)
        source = path.read_text()
        assert re.search(rf"^(async )?def {function}\(", source, flags=re.M), (
            f"the migration guide pins a decision on {module}::{function}, which does not exist"
        )
