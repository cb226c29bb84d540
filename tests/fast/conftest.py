"""The speed layer's tests skip in a run with the fast paths off (``FASTPEEWEE_FAST_PATHS=0``).

Mark a module or test ``without_fast_paths`` when it holds either way (the
switch itself, the explicit ``compile_query`` API).
"""

from __future__ import annotations

import pytest

from fastpeewee import fast

from . import OFF_REASON


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "without_fast_paths: runs in tests/fast even with FASTPEEWEE_FAST_PATHS=0"
    )


@pytest.fixture(autouse=True)
def _fast_paths_on(request: pytest.FixtureRequest) -> None:
    if not fast.ENABLED and request.node.get_closest_marker("without_fast_paths") is None:
        pytest.skip(OFF_REASON)
