"""The README's "Quick look" runs as written (async block, then the sync block)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastpeewee import AsyncDatabase

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK_LOOK = README.read_text().split("## Quick look", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"^```python\n(.*?)^```$", QUICK_LOOK, flags=re.S | re.M)


def test_quick_look_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(BLOCKS) == 2
    monkeypatch.chdir(tmp_path)  # the example's SQLite file goes here
    namespace: dict[str, object] = {"__name__": "readme_quick_look"}
    try:
        for index, block in enumerate(BLOCKS):
            exec(compile(block, f"README.md[quick look {index}]", "exec"), namespace)
        db = namespace["db"]
        user = namespace["User"]
        assert isinstance(db, AsyncDatabase)
        emails = [u.email for u in user.select().order_by(user.email)]  # type: ignore[attr-defined]
        assert emails == ["ann@example.com", "bob@example.com", "carl@example.com"]
    finally:
        for value in namespace.values():
            if isinstance(value, AsyncDatabase):
                value.close_all()


PINS = README.read_text().split("### Promises, and the tests that pin them", 1)[1]
PINS = PINS.split("\n#", 1)[0]


def test_every_promise_names_tests_that_exist() -> None:
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", PINS)
    assert len(named) >= 25
    tests = Path(__file__).resolve().parent
    for module, function in named:
        [path] = tests.rglob(module)
        source = path.read_text()
        assert re.search(rf"^(async )?def {function}\(", source, flags=re.M), (
            f"README pins a promise on {module}::{function}, which does not exist"
        )
