"""One version: the installed distribution's metadata and ``fastpeewee.__version__`` agree."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import fastpeewee

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_metadata_carries_the_package_version():
    # A stale editable install (pyproject.toml changed since) fails here: `make` reinstalls.
    assert importlib.metadata.version("fastpeewee") == fastpeewee.__version__


def test_pyproject_reads_the_version_from_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "fastpeewee._version.__version__"}
