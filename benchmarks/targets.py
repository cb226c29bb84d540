"""Issue 4's targets, checked against a run's results (the printed table or a JSON file).

    python -m benchmarks.targets [benchmarks/results/latest.json]

"The best ORM peer" is the best async one: playhouse.pwasyncio, SQLAlchemy or
Tortoise. Plain sync peewee is shown in the table for reference (on SQLite it
skips the thread hop every async SQLite layer pays), not counted here.
Comparisons use the median ratios to the raw driver.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FAST, PW = "fastpeewee", "playhouse.pwasyncio"
ASYNC_ORMS = (PW, "SQLAlchemy 2 async ORM", "Tortoise ORM")
LAYER_BOUND = [(b, w) for b in ("sqlite", "postgres") for w in ("W1", "W2", "W4", "W6")]
LAYER_BOUND += [("postgres", "W3"), ("postgres", "W5")]
TO_RAW = {
    ("postgres", "W1"): 0.5,
    ("postgres", "W2"): 0.5,
    ("postgres", "W3"): 0.6,
    ("postgres", "W5"): 0.6,
    ("postgres", "W6"): 0.4,
    ("postgres", "W4"): 1.5,
    ("sqlite", "W1"): 0.6,
}
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _ratios(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float | None]]:
    table: dict[tuple[str, str], dict[str, float | None]] = {}
    for cell in results:
        table.setdefault((cell["backend"], cell["workload"]), {})[cell["peer"]] = cell[
            "median_ratio"
        ]
    return table


def _line(what: str, value: float | None, goal: float) -> str:
    if value is None:
        return f"MISSED  {what}: no result (failed), target >= {goal:g}"
    verdict = "met   " if value >= goal else "MISSED"
    return f"{verdict}  {what}: {value:.2f}, target >= {goal:g}"


def _vs_peers(key: tuple[str, str], row: dict[str, float | None]) -> list[str]:
    fast = row.get(FAST)
    others = {p: r for p, r in row.items() if p in ASYNC_ORMS}
    best_name, best = max(
        ((p, r) for p, r in others.items() if r is not None),
        key=lambda pr: pr[1],
        default=("-", None),
    )
    where = f"{NAMES[key[0]]} {key[1]}"
    lines = []
    if key in LAYER_BOUND:
        pw = others.get(PW)
        lines.append(
            _line(
                f"{where} fastpeewee / pwasyncio",
                fast / pw if fast is not None and pw else None,
                2.0,
            )
        )
        lines.append(
            _line(
                f"{where} fastpeewee / best ORM peer ({best_name})",
                fast / best if fast is not None and best else None,
                1.3,
            )
        )
    elif key[0] == "sqlite" and key[1] in ("W3", "W5"):
        lines.append(
            _line(
                f"{where} fastpeewee / best ORM peer ({best_name})",
                fast / best if fast is not None and best else None,
                1.0,
            )
        )
    if key in TO_RAW:
        lines.append(_line(f"{where} fastpeewee / raw driver", fast, TO_RAW[key]))
    return lines


def check(payload: dict[str, Any]) -> list[str]:
    """One line per target: met or MISSED, with the measured value."""
    lines = []
    for key, row in _ratios(payload.get("results", [])).items():
        lines += _vs_peers(key, row)
    http = payload.get("http") or {}
    for cell in http.get("results", []):
        if cell["workload"] == "H1" and cell["app"] == FAST:
            lines.append(_line("H1 fastpeewee app / SQLAlchemy app", cell["median_ratio"], 1.5))
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
