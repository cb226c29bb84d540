"""H2 with wrk, before and after in one run: the SQLAlchemy app, the reference app of
another checkout (``--before``, e.g. /work/main) and of this one, round by round.

Uses benchmarks/web.py's pieces (uvicorn per app on its own database, the same
seed, wrk with 10 connections); prints the median requests/s and the median
ratio to the SQLAlchemy app of the same round, per worker count.

    PYTHONPATH=src .venv/bin/python benchmarks/profile/h2_wrk.py --backend postgres \
        --before /work/main [--workers 1,2] [--rounds 3] [--seconds 4] [--only H2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import web  # noqa: E402
from tests.servers import MariaDBServer, PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["postgres", "mysql"], default="postgres")
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--only", default="H2")
    args = parser.parse_args()
    server = (PostgresServer if args.backend == "postgres" else MariaDBServer).start()
    tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-h2-wrk-"))
    roots = {"SQLAlchemy": ROOT, "before": args.before.resolve(), "after": ROOT}
    specs = {"SQLAlchemy": web.APPS["SQLAlchemy"]}
    specs["before"] = specs["after"] = web.APPS["fastpeewee"]
    try:
        urls = {name: web.create_database(server, f"h2_{name.lower()}") for name in roots}
        databases = {name: f"h2_{name.lower()}" for name in roots}
        for n, count in enumerate(int(w) for w in args.workers.split(",")):
            apps = [
                web.App(
                    name,
                    specs[name],
                    urls[name],
                    roots[name],
                    os.pathsep.join([str(roots[name] / "src"), str(roots[name])]),
                    tmp / f"{name}-{count}.log",
                    count,
                )
                for name in roots
            ]
            try:
                for app in apps:
                    app.start()
                    if n == 0:
                        web.seed(app)
                web.same_json(apps)
                cells = web._measure(
                    server, apps, databases, args.only.split(","), args.rounds, args.seconds, tmp
                )
            finally:
                for app in apps:
                    app.stop()
            load = os.getloadavg()[0]
            print(f"{args.backend}, {count} worker(s), load {load:.2f}, {args.rounds} rounds:")
            for cell in cells:
                ratio = statistics.median(cell["ratios"]) if cell["ratios"] else None
                print(
                    f"  {cell['workload']} {cell['app']:10s} {cell['median_rps'] or 0:8.0f} req/s"
                    f"  x{ratio or 0:.2f} of SQLAlchemy  p50 {cell['median_p50_ms'] or 0:.1f} ms"
                    f"  {cell['error']}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
