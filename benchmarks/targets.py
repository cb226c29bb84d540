"""Issue 15's targets, checked against a run's results (the printed table or a JSON file).

    python -m benchmarks.targets [benchmarks/results/latest.json]

To the raw driver measured in the same round (median ratio): PostgreSQL
(asyncpg) W1 >= 0.75, W2 >= 0.65, W3 >= 0.8, W4 >= 2.0 (COPY), W5 >= 0.85,
W6 >= 0.6; SQLite (aiosqlite) W1 >= 2.5, W2 >= 0.6, W4 >= 0.85, W6 >= 2.0,
and W3, W5 >= 1.0 x plain sync peewee; MariaDB (asyncmy) W1 >= 0.6, W2 >= 0.6,
W3 >= 0.7, W4 >= 1.0, W5 >= 0.7, W6 >= 0.5.

Against every ORM peer (playhouse.pwasyncio, SQLAlchemy, Tortoise and sync
peewee) on every workload and backend: ahead (> 1.0x), by >= 1.3x on W1, W2,
W4 and W6. Over HTTP: H1 and H2 >= 1.5x the SQLAlchemy app, with 1 and with
2 uvicorn workers, on each server measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FAST, SYNC, PREPARED = "fastpeewee", "peewee (sync)", "fastpeewee prepared"
ORM_PEERS = ("playhouse.pwasyncio", "SQLAlchemy 2 async ORM", "Tortoise ORM", SYNC)
TO_RAW = {
    ("postgres", "W1"): 0.75,
    ("postgres", "W2"): 0.65,
    ("postgres", "W3"): 0.8,
    ("postgres", "W4"): 2.0,
    ("postgres", "W5"): 0.85,
    ("postgres", "W6"): 0.6,
    ("sqlite", "W1"): 2.5,
    ("sqlite", "W2"): 0.6,
    ("sqlite", "W4"): 0.85,
    ("sqlite", "W6"): 2.0,
    ("mysql", "W1"): 0.6,
    ("mysql", "W2"): 0.6,
    ("mysql", "W3"): 0.7,
    ("mysql", "W4"): 1.0,
    ("mysql", "W5"): 0.7,
    ("mysql", "W6"): 0.5,
}
#: Targets set against plain sync peewee instead of the raw driver.
TO_SYNC = {("sqlite", "W3"): 1.0, ("sqlite", "W5"): 1.0}
#: Workloads where fastpeewee must lead every ORM peer by this much (elsewhere: be ahead).
LEAD = {"W1": 1.3, "W2": 1.3, "W4": 1.3, "W6": 1.3}
HTTP = {"H1": 1.5, "H2": 1.5}
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
RAW = {"sqlite": "aiosqlite", "postgres": "asyncpg", "mysql": "asyncmy"}


def _ratios(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float | None]]:
    table: dict[tuple[str, str], dict[str, float | None]] = {}
    for cell in results:
        table.setdefault((cell["backend"], cell["workload"]), {})[cell["peer"]] = cell[
            "median_ratio"
        ]
    return table


def _line(what: str, value: float | None, goal: float, strict: bool = False) -> str:
    sign = ">" if strict else ">="
    if value is None:
        return f"MISSED  {what}: no result (failed), target {sign} {goal:g}"
    ok = value > goal if strict else value >= goal
    return f"{'met   ' if ok else 'MISSED'}  {what}: {value:.2f}, target {sign} {goal:g}"


def _row(key: tuple[str, str], row: dict[str, float | None]) -> list[str]:
    fast = row.get(FAST)
    where = f"{NAMES.get(key[0], key[0])} {key[1]}"
    lines = []
    if key in TO_RAW:
        lines.append(_line(f"{where} fastpeewee / raw {RAW[key[0]]}", fast, TO_RAW[key]))
    if key in TO_SYNC:
        sync = row.get(SYNC)
        value = fast / sync if fast is not None and sync else None
        lines.append(_line(f"{where} fastpeewee / sync peewee", value, TO_SYNC[key]))
    for peer in ORM_PEERS:
        if peer not in row or (peer == SYNC and key in TO_SYNC):
            continue
        other = row[peer]
        value = fast / other if fast is not None and other else None
        goal = LEAD.get(key[1])
        what = f"{where} fastpeewee / {peer}"
        lines.append(_line(what, value, goal) if goal else _line(what, value, 1.0, strict=True))
    return lines


def _http(http: dict[str, Any]) -> list[str]:
    where = NAMES.get(http.get("backend", "postgres"), "")
    lines = []
    for cell in http.get("results", []):
        if cell["app"] == FAST and cell["workload"] in HTTP:
            what = (
                f"{where} {cell['workload']} fastpeewee app / SQLAlchemy app, "
                f"{cell.get('workers', 1)} worker(s)"
            )
            lines.append(_line(what, cell["median_ratio"], HTTP[cell["workload"]]))
    return lines


def check(payload: dict[str, Any]) -> list[str]:
    """One line per target: met or MISSED, with the measured value."""
    lines = []
    for key, row in _ratios(payload.get("results", [])).items():
        lines += _row(key, row)
    for name in ("http", "http_mysql"):
        lines += _http(payload.get(name) or {})
    return lines


def prepared(payload: dict[str, Any]) -> list[str]:
    """The reads again with ``db.prepare`` (not a target: the README's way to the
    raw driver's speed), beside the raw-driver targets of the usual calls."""
    lines = []
    for key, row in _ratios(payload.get("results", [])).items():
        value = row.get(PREPARED)
        if key in TO_RAW and key[1] in ("W1", "W2", "W6") and value is not None:
            where = f"{NAMES.get(key[0], key[0])} {key[1]}"
            lines.append(
                f"{where} fastpeewee prepared / raw {RAW[key[0]]}: {value:.2f} "
                f"(the usual calls' target: >= {TO_RAW[key]:g})"
            )
    return lines


def main() -> None:
    path = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else (Path(__file__).resolve().parent / "results" / "latest.json")
    )
    print("\n".join(check(json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
