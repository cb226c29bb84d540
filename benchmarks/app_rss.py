"""The reference app's memory under load: RSS after 10,000 and after 100,000 requests.

    python -m benchmarks.run --app-rss [--quick]      (make bench-rss)

The reference app (examples/sql_app) runs in one uvicorn process (``--workers
1``: the app runs in that process itself) on a throwaway PostgreSQL, seeded
like H1-H3. ``wrk`` loads it in 2-second bursts, alternating H1 (one user
with items) and H2 (a page of 100 users with items); the process's ``VmRSS``
(/proc/PID/status) is read between bursts, when no request is in flight. The
target: RSS after 100,000 requests within 10% of RSS after 10,000. Bounded:
at most 300 s of load (``--quick``: 20,000 and 2,000 requests, 60 s);
a run that hits the bound reports the requests it reached.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.servers import PostgresServer, ServerUnavailable

from . import web

RESULTS = Path(__file__).resolve().parent / "results" / "app-rss.json"
LIMIT = 1.10


def rss_mb(pid: int) -> float:
    """Resident set of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def load(app: web.App, first: int, last: int, seconds: float, scripts: Path) -> dict[str, Any]:
    """Load ``app`` until ``last`` requests (or ``seconds``); RSS at ``first`` and ``last``."""
    assert app.process is not None
    pid = app.process.pid
    started = time.monotonic()
    done, n = 0, 0
    found: dict[str, Any] = {"rss_start_mb": rss_mb(pid), "samples": []}
    while done < last and time.monotonic() - started < seconds:
        summary = web.wrk(app, "H1" if n % 2 == 0 else "H2", 2.0, scripts)
        n += 1
        done += summary["requests"]
        rss = rss_mb(pid)
        found["samples"].append((done, round(rss, 1)))
        if "rss_first_mb" not in found and done >= first:
            found["rss_first_mb"], found["requests_first"] = rss, done
    found["rss_last_mb"], found["requests_last"] = rss_mb(pid), done
    found["seconds"] = round(time.monotonic() - started, 1)
    found["complete"] = done >= last and "rss_first_mb" in found
    if "rss_first_mb" in found:
        found["ratio"] = found["rss_last_mb"] / found["rss_first_mb"]
    return found


def verdict(found: dict[str, Any], first: int, last: int) -> str:
    """One line: met or MISSED, with the numbers."""
    if "ratio" not in found:
        return f"MISSED  app RSS: fewer than {first:,} requests in {found['seconds']} s"
    ok = found["ratio"] <= LIMIT and found["complete"]
    where = (
        f"RSS {found['rss_first_mb']:.1f} MB after {found['requests_first']:,} requests, "
        f"{found['rss_last_mb']:.1f} MB after {found['requests_last']:,}"
    )
    short = "" if found["complete"] else f" (stopped at the time bound, not {last:,})"
    return (
        f"{'met   ' if ok else 'MISSED'}  reference app {where}{short}: "
        f"x{found['ratio']:.3f}, target <= {LIMIT:.2f}"
    )


def main(app_root: Path = web.ROOT, quick: bool = False) -> None:
    """Start PostgreSQL and the app, load it, print and save the verdict."""
    first, last, seconds = (2_000, 20_000, 60.0) if quick else (10_000, 100_000, 300.0)
    skipped = web.why_skipped(app_root)
    if skipped:
        raise SystemExit(skipped)
    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        raise SystemExit(f"PostgreSQL unavailable: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-bench-rss-"))
    app = None
    try:
        url = web.create_database(server, "bench_app_rss")
        pythonpath = os.pathsep.join([str(app_root / "src"), str(app_root)])
        app = web.App(
            "fastpeewee", web.APPS["fastpeewee"], url, app_root, pythonpath, tmp / "app.log"
        )
        app.start()
        web.seed(app)
        found = load(app, first, last, seconds, tmp)
    finally:
        if app is not None:
            app.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    found["verdict"] = verdict(found, first, last)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(found["verdict"])
    print(f"JSON: {RESULTS}", file=sys.stderr)
