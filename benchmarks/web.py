"""H1-H3: the reference app (examples/sql_app, fastpeewee) against the same app on
SQLAlchemy 2 async (benchmarks/apps/sqlalchemy_app), over HTTP on PostgreSQL
and on MariaDB.

Each app runs in its own uvicorn (1 worker, then 2: ``--workers``) on a free
loopback port, on its own database of the throwaway server, seeded through its
own API with the same users and items. ``wrk --latency`` loads one endpoint of
one app at a time for a fixed duration, the apps alternating round by round;
requests per second, p50 and p99 latency are kept:

  H1  GET /users/{id}          (a random one of the seeded users, with items)
  H2  GET /users/?limit=100    (a page of users, each with items)
  H3  POST /users/             (sign-up: scrypt dominates, same cost in both apps)

Any non-2xx response fails the cell; after H3 the new users are counted in
the database.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee
from tests.servers import MariaDBServer, PostgresServer, free_port

Server = PostgresServer | MariaDBServer

ROOT = Path(__file__).resolve().parent.parent
SEED_USERS = 100
CONNECTIONS = 10
APPS = {
    "fastpeewee": "examples.sql_app.main:app",
    "SQLAlchemy": "benchmarks.apps.sqlalchemy_app.main:app",
}
BASELINE = "SQLAlchemy"
ENDPOINTS = {"H1": "GET /users/{id}", "H2": "GET /users/?limit=100", "H3": "POST /users/"}

_DONE_LUA = """
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"status_errors\\": %d, "
    .. "\\"socket_errors\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua(key: str, prefix: str) -> str:
    if key == "H1":
        body = f"""math.randomseed(7)
request = function()
  return wrk.format("GET", "/users/" .. math.random(1, {SEED_USERS}))
end"""
    elif key == "H2":
        body = 'request = function() return wrk.format("GET", "/users/?limit=100") end'
    else:
        body = f"""local n = 0
request = function()
  n = n + 1
  local json = '{{"email": "{prefix}' .. n .. '@example.com", "password": "correct horse"}}'
  return wrk.format("POST", "/users/", {{["Content-Type"] = "application/json"}}, json)
end"""
    return body + "\n" + _DONE_LUA


def why_skipped(app_root: Path) -> str:
    """Why H1-H3 cannot run here, or "" when they can."""
    if not (app_root / "examples" / "sql_app" / "main.py").exists():
        return f"H1-H3 skipped: the reference app {app_root}/examples/sql_app is missing"
    if shutil.which("wrk") is None:
        return "H1-H3 skipped: wrk is not installed (apt-get install wrk)"
    for module in ("fastapi", "uvicorn", "sqlalchemy", "email_validator"):
        try:
            __import__(module)
        except ImportError:
            return f"H1-H3 skipped: {module} is not installed (pip install -e '.[bench]')"
    return ""


@dataclass
class App:
    """One app served by uvicorn on its own database."""

    name: str
    spec: str
    database_url: str
    cwd: Path
    pythonpath: str
    log: Path
    workers: int = 1
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Run uvicorn and wait until the app answers."""
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "POOL_SIZE": "10",
            "PYTHONPATH": self.pythonpath,
        }
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            self.spec,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if request("GET", f"{self.base}/users/?limit=1")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} app did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop uvicorn (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One HTTP request; returns the status and the decoded JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def seed(app: App) -> None:
    """SEED_USERS users with one item each, through the app's own routes."""

    def one(n: int) -> None:
        status, user = request(
            "POST",
            f"{app.base}/users/",
            {"email": f"seed{n}@example.com", "password": "correct horse"},
        )
        if status != 201:
            raise RuntimeError(f"{app.name}: POST /users/ answered {status}: {user}")
        status, item = request(
            "POST",
            f"{app.base}/users/{user['id']}/items/",
            {"title": f"item of {n}", "description": "seeded"},
        )
        if status != 201:
            raise RuntimeError(f"{app.name}: POST items answered {status}: {item}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(SEED_USERS)))


def same_json(apps: list[App]) -> None:
    """Both apps must return the same users and items, in the same JSON shape."""
    seen = {}
    for app in apps:
        status, users = request("GET", f"{app.base}/users/?limit=100")
        if status != 200 or len(users) != SEED_USERS:
            raise RuntimeError(
                f"{app.name}: GET /users/?limit=100 gave {status}, {len(users)} users"
            )
        seen[app.name] = sorted(
            (
                sorted(u),
                u["email"],
                u["is_active"],
                [(sorted(i), i["title"], i["description"]) for i in u["items"]],
            )
            for u in users
        )
    first, *others = seen.values()
    if any(other != first for other in others):
        raise RuntimeError(f"the apps' JSON differ: {json.dumps(seen)[:1000]}")


def wrk(app: App, key: str, seconds: float, scripts: Path) -> dict[str, Any]:
    """Load one endpoint for ``seconds``; returns wrk's summary."""
    prefix = f"h3-{app.name.lower()}-{uuid.uuid4().hex[:8]}-"
    script = scripts / f"{key}-{prefix}.lua"
    script.write_text(_lua(key, prefix))
    argv = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        app.base,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    summary: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["prefix"] = prefix
    if summary["status_errors"] or summary["socket_errors"]:
        raise RuntimeError(
            f"{app.name} {key}: {summary['status_errors']} non-2xx responses, "
            f"{summary['socket_errors']} socket errors of {summary['requests']}"
        )
    return summary


def _database(server: Server, database: str) -> peewee.Database:
    if isinstance(server, MariaDBServer):
        return peewee.MySQLDatabase(database, **server.connect_params)
    return peewee.PostgresqlDatabase(database, **server.connect_params)


def create_database(server: Server, name: str) -> str:
    """Create database ``name`` on ``server``; returns the URL an app connects with."""
    if isinstance(server, MariaDBServer):
        server.sql_as_root(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return f"mysql://{server.user}:{server.password}@127.0.0.1:{server.port}/{name}"
    server._psql(f"CREATE DATABASE {name}")
    return f"postgresql://{server.user}@127.0.0.1:{server.port}/{name}"


def count_signups(server: Server, database: str, prefix: str) -> int:
    """Users whose email starts with ``prefix``, whatever the app named its table."""
    db = _database(server, database)
    schema = database if isinstance(server, MariaDBServer) else "public"
    quote = "`" if isinstance(server, MariaDBServer) else '"'
    with db.connection_context():
        table = db.execute_sql(
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'hashed_password' AND table_schema = %s",
            (schema,),
        ).fetchone()[0]
        sql = f"SELECT COUNT(*) FROM {quote}{table}{quote} WHERE email LIKE %s"
        return int(db.execute_sql(sql, (prefix + "%",)).fetchone()[0])


def _check_signups(server: Server, app: App, database: str, summary: dict[str, Any]) -> None:
    # wrk counts the responses it read; requests cut off at the end may still have landed.
    found = count_signups(server, database, summary["prefix"])
    if not summary["requests"] <= found <= summary["requests"] + CONNECTIONS:
        raise RuntimeError(
            f"{app.name} H3: {found} users in the database after "
            f"{summary['requests']} answered sign-ups"
        )


def _measure(
    server: Server,
    apps: list[App],
    databases: dict[str, str],
    keys: list[str],
    rounds: int,
    seconds: float,
    scripts: Path,
) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, Any]]
    cells = {
        (k, a.name): {
            "workload": k,
            "endpoint": ENDPOINTS[k],
            "app": a.name,
            "workers": a.workers,
            "rates": [],
            "ratios": [],
            "p50_ms": [],
            "p99_ms": [],
            "error": "",
        }
        for k in keys
        for a in apps
    }
    for round_no in range(rounds):
        for key in keys:
            order = apps if round_no % 2 == 0 else apps[::-1]
            this_round = {}
            for app in order:
                cell = cells[(key, app.name)]
                if cell["error"]:
                    continue
                try:
                    summary = wrk(app, key, seconds, scripts)
                    if key == "H3":
                        _check_signups(server, app, databases[app.name], summary)
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                    cell["error"] = str(exc)[:300]
                    print(f"  {key} {app.name}: {cell['error']}", file=sys.stderr)
                    continue
                this_round[app.name] = summary["rps"]
                cell["p50_ms"].append(summary["p50_us"] / 1000)
                cell["p99_ms"].append(summary["p99_us"] / 1000)
            for name, rate in this_round.items():
                cells[(key, name)]["rates"].append(rate)
                if BASELINE in this_round:
                    cells[(key, name)]["ratios"].append(rate / this_round[BASELINE])
        print(
            f"  http {apps[0].workers} worker(s) round {round_no + 1}/{rounds} done",
            file=sys.stderr,
            flush=True,
        )
    for cell in cells.values():
        ok = cell["rates"] and not cell["error"]
        cell["median_rps"] = statistics.median(cell["rates"]) if ok else None
        cell["median_ratio"] = statistics.median(cell["ratios"]) if ok and cell["ratios"] else None
        for q in ("p50_ms", "p99_ms"):
            cell[f"median_{q}"] = statistics.median(cell[q]) if ok else None
    return list(cells.values())


def _apps(urls: dict[str, str], app_root: Path, tmp: Path, workers: int) -> list[App]:
    apps = []
    for name, spec in APPS.items():
        url = urls[name]
        kind = url.split(":", 1)[0]
        cwd = app_root if name == "fastpeewee" else ROOT
        pythonpath = os.pathsep.join([str(cwd / "src"), str(cwd)])
        log = tmp / f"{name}-{kind}-{workers}.log"
        apps.append(App(name, spec, url, cwd, pythonpath, log, workers))
    return apps


def run_http(
    server: Server,
    quick: bool,
    only: set[str] | None = None,
    app_root: Path = ROOT,
    workers: list[int] | None = None,
) -> dict[str, Any]:
    """Serve both apps on ``server`` with each worker count and load H1-H3.

    The apps are seeded once (under the first worker count); later worker
    counts restart them on the same databases. Returns what the report needs.
    """
    keys = [k for k in ENDPOINTS if only is None or k in only]
    workers = workers or [1]
    rounds, seconds = (2, 2.0) if quick else (3, 6.0)
    info: dict[str, Any] = {
        "backend": "mysql" if isinstance(server, MariaDBServer) else "postgres",
        "rounds": rounds,
        "seconds": seconds,
        "connections": CONNECTIONS,
        "baseline": BASELINE,
        "seed_users": SEED_USERS,
        "workers": workers,
        "results": [],
    }
    info["skipped"] = why_skipped(app_root) if keys else "not selected"
    if info["skipped"]:
        if keys:
            print(info["skipped"], file=sys.stderr)
        return info
    databases = {name: f"bench_app_{name.lower()}" for name in APPS}
    tmp = Path(tempfile.mkdtemp(prefix="fastpeewee-bench-http-"))
    urls = {name: create_database(server, databases[name]) for name in APPS}
    try:
        for n, count in enumerate(workers):
            apps = _apps(urls, app_root, tmp, count)
            try:
                try:
                    for app in apps:
                        app.start()
                        if n == 0:
                            seed(app)
                    same_json(apps)
                except (RuntimeError, OSError, ValueError, KeyError) as exc:
                    # The database workloads' results still count: report, do not crash.
                    info["skipped"] = f"H1-H3 ({count} workers) failed before measuring: {exc}"
                    print(info["skipped"], file=sys.stderr)
                    return info
                print(
                    f"  http {info['backend']}: apps up with {count} worker(s), same JSON",
                    file=sys.stderr,
                    flush=True,
                )
                info["results"] += _measure(server, apps, databases, keys, rounds, seconds, tmp)
            finally:
                for app in apps:
                    app.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(http: dict[str, Any]) -> str:
    """Markdown: requests/s, p50/p99 latency of each app, fastpeewee's ratio to SQLAlchemy."""
    if http.get("skipped"):
        return str(http["skipped"])
    where = {"mysql": "MariaDB", "postgres": "PostgreSQL"}[http.get("backend", "postgres")]
    lines = [
        f"HTTP on {where}, uvicorn --workers {'/'.join(map(str, http.get('workers', [1])))}, "
        f"wrk --latency {http['connections']} connections, "
        f"{http['rounds']} rounds of {http['seconds']:g} s "
        f"(ratio to the {http['baseline']} app in the same round; latency in ms, "
        "median over rounds):",
        "",
        "| workload | workers | "
        + " | ".join(f"{a} req/s | {a} p50 / p99" for a in APPS)
        + " | fastpeewee / SQLAlchemy |",
        "|---|---:|" + "---:|---:|" * len(APPS) + "---:|",
    ]
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for cell in http["results"]:
        by_key.setdefault((cell["workload"], cell.get("workers", 1)), {})[cell["app"]] = cell
    for (key, count), cells in by_key.items():
        parts = []
        for a in APPS:
            c = cells[a]
            rate = f"{c['median_rps']:,.0f}" if c["median_rps"] else "failed"
            parts.append(f"{rate} | {_ms(c.get('median_p50_ms'))} / {_ms(c.get('median_p99_ms'))}")
        ratio = cells["fastpeewee"]["median_ratio"]
        lines.append(
            f"| {key} {ENDPOINTS[key]} | {count} | {' | '.join(parts)} | "
            f"{f'{ratio:.2f}' if ratio else '-'} |"
        )
    return "\n".join(lines)
