"""The results as Markdown tables (stdout, README) and as JSON (benchmarks/results/)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .runner import Cell, Settings

SHORT = {
    "raw asyncpg": "raw",
    "raw aiosqlite": "raw",
    "raw asyncmy": "raw",
    "raw aiomysql": "aiomysql",
    "playhouse.pwasyncio": "pwasyncio",
    "SQLAlchemy 2 async ORM": "SQLAlchemy",
    "Tortoise ORM": "Tortoise",
    "peewee (sync)": "peewee sync",
    "fastpeewee prepared": "fp prepared",
}
BACKEND = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def _fmt_ratio(cell: Cell) -> str:
    if cell.error:
        return "MISMATCH" if cell.error.startswith("MISMATCH") else "failed"
    return f"{cell.ratio:.2f}" if cell.ratio is not None else "-"


def ratio_table(cells: list[Cell]) -> str:
    """Workloads down, peers across: the median ratio to the raw driver (and its rate)."""
    floors = {"raw asyncpg", "raw aiosqlite", "raw asyncmy"}
    peers = list(dict.fromkeys(SHORT.get(c.peer, c.peer) for c in cells if c.peer not in floors))
    lines = [
        "| workload | raw driver | " + " | ".join(peers) + " |",
        "|---|---:|" + "---:|" * len(peers),
    ]
    rows: dict[tuple[str, str], dict[str, Cell]] = {}
    for cell in cells:
        rows.setdefault((cell.backend, cell.workload), {})[SHORT.get(cell.peer, cell.peer)] = cell
    for (backend, key), by_peer in rows.items():
        raw = by_peer["raw"]
        first = next(iter(by_peer.values()))
        rate = f"{raw.rate:,.0f} {raw.unit}" if raw.rate is not None else _fmt_ratio(raw)
        ratios = " | ".join(_fmt_ratio(by_peer[p]) if p in by_peer else "-" for p in peers)
        lines.append(f"| {BACKEND[backend]} {key} {first.title} | {rate} | {ratios} |")
    return "\n".join(lines)


def failures(cells: list[Cell]) -> list[str]:
    """One line per failed cell, with the reason."""
    return [f"{BACKEND[c.backend]} {c.workload} {c.peer}: {c.error}" for c in cells if c.error]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


PACKAGES = (
    "peewee",
    "asyncpg",
    "aiosqlite",
    "asyncmy",
    "aiomysql",
    "PyMySQL",
    "psycopg",
    "SQLAlchemy",
    "tortoise-orm",
    "fastapi",
    "uvicorn",
    "uvloop",
)


def versions() -> dict[str, str]:
    """Installed versions of the peers and the HTTP stack."""
    from importlib import metadata

    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def header(command: str, settings: Settings) -> dict[str, Any]:
    """When, where and how: the JSON's first keys and the printed preamble."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import fastpeewee

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "fastpeewee": str(Path(fastpeewee.__file__).parent),
        "commit": commit,
        "argv": sys.argv[1:],
        "rounds": settings.rounds,
        "heavy_rounds": settings.heavy_rounds,
        "seconds_per_measurement": settings.budget,
        "machine": machine(),
        "versions": versions(),
    }
