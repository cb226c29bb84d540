"""Interleave the peers round by round and keep the median rate and ratio of each cell."""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from .peers import Peer, peers_for
from .peers.base import Target
from .schema import Checker
from .workloads import WORKLOADS, Mismatch, Plan


@dataclass
class Cell:
    """One peer on one workload of one backend, over all rounds."""

    backend: str
    workload: str
    title: str
    unit: str
    peer: str
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    error: str = ""  # why the peer failed this workload; "MISMATCH: ..." if results were wrong

    @property
    def rate(self) -> float | None:
        """Median units per second over the rounds."""
        return statistics.median(self.rates) if self.rates and not self.error else None

    @property
    def ratio(self) -> float | None:
        """Median of the per-round ratio to the raw driver's rate in the same round."""
        return statistics.median(self.ratios) if self.ratios and not self.error else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the medians."""
        return {**asdict(self), "median_rate": self.rate, "median_ratio": self.ratio}


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


async def _setup(peers: list[Peer]) -> dict[str, str]:
    """Open every peer; returns the peers that could not start, with the reason."""
    broken = {}
    for peer in peers:
        try:
            await peer.setup()
        except Exception as exc:
            broken[peer.name] = f"setup failed: {_describe(exc)}"
    return broken


async def _settings(peers: list[Peer], broken: dict[str, str]) -> dict[str, str]:
    """synchronous_commit as each PostgreSQL peer's own session sees it."""
    seen = {}
    for peer in peers:
        if peer.name not in broken:
            seen[peer.name] = await peer.synchronous_commit()
    if any(value != "off" for value in seen.values()):
        raise SystemExit(f"synchronous_commit is not off for every peer: {seen}")
    return seen


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds per workload (fewer for heavy ones) and seconds per cell."""

    rounds: int
    heavy_rounds: int
    budget: float


async def bench_backend(
    target: Target,
    checker: Checker,
    settings: Settings,
    only: set[str] | None = None,
    peers: list[Peer] | None = None,
) -> tuple[list[Cell], dict[str, str]]:
    """Run the workloads (all, or the keys in ``only``) on one backend.

    ``peers`` defaults to :func:`peers_for`; the first one is the ratios' floor.
    """
    peers = peers or peers_for(target)
    broken = await _setup(peers)
    if peers[0].name in broken:
        raise SystemExit(f"{peers[0].name}: {broken[peers[0].name]}")
    seen = await _settings(peers, broken) if target.backend == "postgres" else {}
    cells = []
    try:
        for workload in WORKLOADS:
            if only is None or workload.key in only:
                rounds = settings.heavy_rounds if workload.heavy else settings.rounds
                cells += await _bench_workload(
                    target.backend, workload, peers, broken, checker, rounds, settings.budget
                )
    finally:
        for peer in peers:
            if not broken.get(peer.name, "").startswith("setup"):
                try:
                    await peer.teardown()
                except Exception as exc:
                    print(f"  {peer.name} teardown: {_describe(exc)}", file=sys.stderr)
    return cells, seen


async def _bench_workload(
    backend: str,
    workload: Any,
    peers: list[Peer],
    broken: dict[str, str],
    checker: Checker,
    rounds: int,
    budget: float,
) -> list[Cell]:
    cells = {
        p.name: Cell(backend, workload.key, workload.title, workload.unit, p.name) for p in peers
    }
    for name, why in broken.items():
        cells[name].error = why
    floor = peers[0].name
    for round_no in range(rounds):
        plan = Plan(seed=round_no)
        # Rotate the order so no peer always runs first, or right after the same one.
        shift = round_no % len(peers)
        this_round: dict[str, float] = {}
        for peer in peers[shift:] + peers[:shift]:
            cell = cells[peer.name]
            if cell.error:
                continue
            try:
                this_round[peer.name] = await workload.measure(peer, plan, checker, budget)
            except Mismatch as exc:
                cell.error = f"MISMATCH: {exc}"
            except Exception as exc:
                cell.error = f"failed: {_describe(exc)}"
            if cell.error:
                print(f"  {backend} {workload.key} {peer.name}: {cell.error}", file=sys.stderr)
        for name, rate in this_round.items():
            cells[name].rates.append(rate)
            if floor in this_round:
                cells[name].ratios.append(rate / this_round[floor])
    print(f"  {backend} {workload.key} done", file=sys.stderr, flush=True)
    return list(cells.values())
