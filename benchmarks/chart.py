"""The documentation's benchmark chart and tables, generated from saved runs.

``python -m benchmarks.chart [--results DIR] [--out DIR]`` reads every
``benchmarks/results/*.json`` that ``make bench`` saved (``latest.json``, the
uncommitted scratch run, is left out), takes the newest run by its ``date``,
and writes into ``docs/assets/``:

- ``benchmarks.svg``: one bar per peer and workload, each peer's median ratio
  to the raw driver measured in the same round (a hand-written SVG, so the
  docs need no plotting library);
- ``benchmarks-table.md``: the same numbers as a table (the raw driver's
  rate, then the ratios), plus the HTTP runs;
- ``benchmarks-history.md``: fastpeewee's ratios in every saved run.

``make docs`` runs it before ``mkdocs build``; the pages include the tables
with ``--8<--`` (pymdownx.snippets), so no number on the site is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ASSETS = ROOT / "docs" / "assets"

BACKENDS = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}
# Column order of the tables and bar order in the chart; the raw driver is the
# baseline. A run shows the peers it measured (older runs lack the last ones).
PEERS = [
    ("fastpeewee", "fastpeewee", "#2e7d32"),
    ("fastpeewee prepared", "fp prepared", "#81c784"),
    ("playhouse.pwasyncio", "pwasyncio", "#1565c0"),
    ("SQLAlchemy 2 async ORM", "SQLAlchemy", "#ef6c00"),
    ("Tortoise ORM", "Tortoise", "#6a1b9a"),
    ("peewee (sync)", "peewee sync", "#757575"),
    ("raw aiomysql", "aiomysql", "#a1887f"),
]
RAW = {"sqlite": "raw aiosqlite", "postgres": "raw asyncpg", "mysql": "raw asyncmy"}


@dataclass(frozen=True)
class Run:
    """One saved ``make bench`` run."""

    path: Path
    data: dict[str, Any]

    @property
    def date(self) -> str:
        return str(self.data["date"])

    def rows(self) -> list[tuple[str, str, str]]:
        """(backend, workload, title) in the order the run measured them."""
        seen: dict[tuple[str, str], str] = {}
        for result in self.data["results"]:
            seen.setdefault((result["backend"], result["workload"]), result["title"])
        return [(backend, workload, title) for (backend, workload), title in seen.items()]

    def result(self, backend: str, workload: str, peer: str) -> dict[str, Any] | None:
        for result in self.data["results"]:
            key = (result["backend"], result["workload"], result["peer"])
            if key == (backend, workload, peer):
                return dict(result)
        return None

    def peers(self) -> list[tuple[str, str, str]]:
        """The entries of :data:`PEERS` this run measured, in their order."""
        measured = {result["peer"] for result in self.data["results"]}
        return [entry for entry in PEERS if entry[0] in measured]

    def ratio(self, backend: str, workload: str, peer: str) -> float | None:
        """The median ratio to the raw driver, or None for a failed or missing cell."""
        result = self.result(backend, workload, peer)
        if result is None or result.get("error") or result.get("median_ratio") is None:
            return None
        return float(result["median_ratio"])


def load_runs(directory: Path = RESULTS) -> list[Run]:
    """Every saved run, oldest first (``latest.json`` left out)."""
    runs = [
        Run(path, json.loads(path.read_text()))
        for path in sorted(directory.glob("*.json"))
        if path.name != "latest.json"
    ]
    if not runs:
        raise SystemExit(f"no saved benchmark run in {directory}: run `make bench` first")
    return sorted(runs, key=lambda run: run.date)


def _cell(value: float | None) -> str:
    return "failed" if value is None else f"{value:.2f}"


def _cell_of(run: Run, backend: str, workload: str, peer: str) -> str:
    """A peer's ratio, ``failed``, or ``-`` where it does not run (aiomysql on SQLite)."""
    if run.result(backend, workload, peer) is None:
        return "-"
    return _cell(run.ratio(backend, workload, peer))


def table(run: Run) -> str:
    """The newest run as Markdown: the raw driver's rate, then each peer's ratio to it."""
    peers = run.peers()
    head = "| workload | raw driver | " + " | ".join(label for _, label, _ in peers) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(peers)]
    for backend, workload, title in run.rows():
        raw = run.result(backend, workload, RAW[backend])
        rate = f"{raw['median_rate']:,.0f} {raw['unit']}" if raw and not raw["error"] else "failed"
        ratios = " | ".join(_cell_of(run, backend, workload, peer) for peer, _, _ in peers)
        lines.append(f"| {BACKENDS[backend]} {workload} {title} | {rate} | {ratios} |")
    for key in ("http", "http_mysql"):
        lines += _http_table(run.data.get(key) or {})
    return "\n".join(lines) + "\n"


def _http_table(http: dict[str, Any]) -> list[str]:
    """The HTTP runs of one server: requests per second per app and worker count."""
    if not http.get("results"):
        return []
    where = BACKENDS.get(http.get("backend", "postgres"), "PostgreSQL")
    lines = [
        "",
        f"Over HTTP ({where}, requests per second, wrk with {http['connections']} "
        f"connections; ratio to the {http['baseline']} app in the same round):",
        "",
        "| workload | workers | fastpeewee app | SQLAlchemy app | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    by_key = {(r["workload"], r["app"], r.get("workers", 1)): r for r in http["results"]}
    for workload, app, workers in sorted(by_key):
        ours = by_key[(workload, app, workers)]
        theirs = by_key.get((workload, "SQLAlchemy", workers))
        if app != "fastpeewee" or theirs is None or ours.get("median_ratio") is None:
            continue
        lines.append(
            f"| {workload} `{ours['endpoint']}` | {workers} | {ours['median_rps']:,.0f} | "
            f"{theirs['median_rps']:,.0f} | {ours['median_ratio']:.2f} |"
        )
    return lines


def history(runs: list[Run]) -> str:
    """fastpeewee's ratio to the raw driver in every saved run, one column per run."""
    head = "| workload | " + " | ".join(f"{r.date[:10]} ({r.data['commit']})" for r in runs) + " |"
    lines = [head, "|---|" + "---:|" * len(runs)]
    for backend, workload, title in runs[-1].rows():
        cells = " | ".join(_cell(r.ratio(backend, workload, "fastpeewee")) for r in runs)
        lines.append(f"| {BACKENDS[backend]} {workload} {title} | {cells} |")
    return "\n".join(lines) + "\n"


def svg(run: Run) -> str:
    """Grouped horizontal bars: per workload, each peer's ratio to the raw driver."""
    rows = run.rows()
    peers = run.peers()
    bar, gap, label_w, plot_w, top = 9, 10, 250, 520, 56
    group_h = bar * len(peers) + gap
    height = top + group_h * len(rows) + 40
    values = [v for b, w, _ in rows for p, _, _ in peers if (v := run.ratio(b, w, p)) is not None]
    scale_max = max(2.0, float(int(max(values, default=1.0)) + 1))

    def x(value: float) -> float:
        return label_w + plot_w * value / scale_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" '
        f'height="{height}" font-family="sans-serif" font-size="11">',
        f"<title>Ratio to the raw driver, {escape(run.date)} (higher is faster)</title>",
        f'<text x="4" y="16" font-size="13" font-weight="bold">Ratio to the raw driver in the '
        f"same round, higher is faster ({escape(run.date)}, {escape(run.data['commit'])})</text>",
    ]
    for index, (_, label, color) in enumerate(peers):
        lx = 4 + index * 108
        out.append(f'<rect x="{lx}" y="26" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="35">{escape(label)}</text>')
    tick = 0.0
    while tick <= scale_max:
        tx = x(tick)
        out.append(
            f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 30}" '
            f'stroke="{"#000" if tick == 1.0 else "#ddd"}" stroke-width="1"/>'
        )
        out.append(f'<text x="{tx:.1f}" y="{height - 16}" text-anchor="middle">{tick:g}</text>')
        tick += 1.0
    for row, (backend, workload, title) in enumerate(rows):
        y0 = top + row * group_h
        out.append(
            f'<text x="{label_w - 6}" y="{y0 + group_h / 2 + 3:.1f}" text-anchor="end">'
            f"{escape(BACKENDS[backend])} {escape(workload)} {escape(title)}</text>"
        )
        for index, (peer, label, color) in enumerate(peers):
            if run.result(backend, workload, peer) is None:
                continue  # not measured on this backend
            value = run.ratio(backend, workload, peer)
            y = y0 + index * bar
            if value is None:
                out.append(
                    f'<text x="{label_w + 2}" y="{y + bar - 1}" font-size="8">failed</text>'
                )
                continue
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{x(value) - label_w:.1f}" '
                f'height="{bar - 1}" fill="{color}"><title>{escape(label)}: {value:.2f}'
                "</title></rect>"
            )
            if peer == "fastpeewee":
                out.append(
                    f'<text x="{x(value) + 3:.1f}" y="{y + bar - 1}" font-size="9">'
                    f"{value:.2f}</text>"
                )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(results: Path = RESULTS, out: Path = ASSETS) -> list[Path]:
    """Write the chart and both tables into ``out``; returns the files written."""
    runs = load_runs(results)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "benchmarks.svg": svg(runs[-1]),
        out / "benchmarks-table.md": table(runs[-1]),
        out / "benchmarks-history.md": history(runs),
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    for path in write(args.results, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
