"""The package version, in one place: ``pyproject.toml`` reads it from here
(``[tool.setuptools.dynamic]``) and ``fastpeewee.__version__`` re-exports it."""

__version__ = "0.1.0"
