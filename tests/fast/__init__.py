"""Tests of the speed layer (:mod:`fastpeewee.fast`).

They check the fast paths themselves, so they skip when ``FASTPEEWEE_FAST_PATHS=0``
turns those off (see ``conftest.py`` here), except the ones marked
``without_fast_paths``. A test elsewhere that checks a fast path was taken
uses :data:`fast_paths_only`.
"""

from __future__ import annotations

import pytest

from fastpeewee import fast

OFF_REASON = (
    "FASTPEEWEE_FAST_PATHS=0: the fast paths are off in this run, "
    "and this test checks a fast path itself"
)

fast_paths_only = pytest.mark.skipif(not fast.ENABLED, reason=OFF_REASON)
"""Skip the marked test in a run with ``FASTPEEWEE_FAST_PATHS=0``."""
