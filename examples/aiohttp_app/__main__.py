"""``python -m examples.aiohttp_app [--host 127.0.0.1] [--port 8000]``: serve the app."""

from __future__ import annotations

import argparse

from aiohttp import web

from .main import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted (Ctrl-C, SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m examples.aiohttp_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
