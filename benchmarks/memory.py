"""Peak RSS of each peer on each workload: one fresh subprocess per peer and backend.

Method. A child process (``python -m benchmarks.memory``) imports only what
its peer needs, opens the peer, and runs each selected workload once for the
measurement budget. Before each workload it collects garbage and resets the
kernel's high-water mark of the process's resident set (``echo 5 >
/proc/self/clear_refs``, Linux 4.0+); after it, it reads ``VmHWM`` (the peak)
and ``VmRSS``. So each workload's peak is its own, not an earlier workload's,
and no other peer's objects or imports are in the process. The table gives the
peak in MB and, in brackets, how far it rose above the RSS just before the
workload (what the workload itself allocated at its worst). Where
``clear_refs`` cannot be written, peaks are ``ru_maxrss`` (cumulative over the
child's workloads, in order) and the JSON says so.

RSS counts the interpreter and every imported module (SQLAlchemy, Tortoise
and their drivers weigh tens of MB before any query), so the absolute peak is
what a process running that library costs; the rise is what the work costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import peewee

from .peers import peers_for
from .peers.base import Target
from .report import BACKEND, SHORT
from .runner import Settings
from .schema import Checker
from .workloads import WORKLOADS, Plan

ROOT = Path(__file__).resolve().parent.parent


def _status(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak(resettable: bool) -> float:
    if resettable:
        return _status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def checker_database(target: Target) -> peewee.Database:
    """A plain peewee connection to the target, for the workloads' checks."""
    if target.backend == "sqlite":
        return peewee.SqliteDatabase(target.path)
    params: dict[str, Any] = {"host": target.host, "port": target.port, "user": target.user}
    if target.backend == "mysql":
        return peewee.MySQLDatabase(target.database, password=target.password, **params)
    return peewee.PostgresqlDatabase(target.database, **params)


async def measure_peer(
    target: Target, peer_name: str, keys: list[str], budget: float
) -> dict[str, Any]:
    """In this process: open the peer and run each workload once, with its peak RSS."""
    peer = next(p for p in peers_for(target) if p.name == peer_name)
    checker = Checker(checker_database(target))
    await peer.setup()
    resettable = _reset_peak()
    result: dict[str, Any] = {
        "rss_after_setup_mb": _status("VmRSS"),
        "method": "VmHWM reset per workload" if resettable else "ru_maxrss (cumulative)",
        "workloads": {},
    }
    try:
        for workload in WORKLOADS:
            if workload.key not in keys:
                continue
            gc.collect()
            _reset_peak()
            before = _status("VmRSS")
            try:
                await workload.measure(peer, Plan(seed=0), checker, budget)
            except Exception as exc:
                result["workloads"][workload.key] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            peak = _peak(resettable)
            result["workloads"][workload.key] = {
                "peak_mb": round(peak, 1),
                "rise_mb": round(peak - before, 1),
            }
    finally:
        await peer.teardown()
        checker.db.close()
    return result


def run_backend(target: Target, only: set[str] | None, settings: Settings) -> dict[str, Any]:
    """Each peer of ``target`` in its own subprocess; ``{peer: result}``."""
    keys = [w.key for w in WORKLOADS if only is None or w.key in only]
    found: dict[str, Any] = {}
    if not keys:
        return found
    for peer in peers_for(target):
        argv = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            json.dumps(asdict(target)),
            peer.name,
            ",".join(keys),
            str(settings.budget),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            found[peer.name] = {"error": (done.stderr or done.stdout)[-300:]}
        else:
            found[peer.name] = json.loads(lines[-1])
    print(f"  {target.backend} memory done", file=sys.stderr, flush=True)
    return found


def table(memory: dict[str, dict[str, Any]]) -> str:
    """Markdown: peak RSS in MB (rise over the RSS before the workload) per peer and workload."""
    method = {
        r.get("method")
        for by_peer in memory.values()
        for r in by_peer.values()
        if isinstance(r, dict) and r.get("method")
    }
    lines = [
        "Peak RSS in MB, one subprocess per peer, (rise during the workload); "
        f"method: {', '.join(sorted(m for m in method if m)) or '-'}:",
        "",
    ]
    peers = list(dict.fromkeys(SHORT.get(p, p) for by_peer in memory.values() for p in by_peer))
    lines += ["| workload | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
    for backend, by_peer in memory.items():
        named = {SHORT.get(p, p): r for p, r in by_peer.items()}
        keys = list(dict.fromkeys(k for r in named.values() for k in r.get("workloads", {})))
        for key in keys:
            cells = []
            for p in peers:
                w = named.get(p, {}).get("workloads", {}).get(key)
                if not w:
                    cells.append("-")
                elif "error" in w:
                    cells.append("failed")
                else:
                    cells.append(f"{w['peak_mb']:.0f} (+{w['rise_mb']:.0f})")
            lines.append(f"| {BACKEND[backend]} {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("target", help="the Target as JSON")
    parser.add_argument("peer")
    parser.add_argument("keys", help="comma-separated workloads")
    parser.add_argument("budget", type=float)
    args = parser.parse_args()
    target = Target(**json.loads(args.target))
    result = asyncio.run(measure_peer(target, args.peer, args.keys.split(","), args.budget))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
