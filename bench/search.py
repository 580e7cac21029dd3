"""Benchmark of List/Search on a big table: latency through HTTP next to the same SQL run on the database.

    .venv/bin/python bench/search.py [--backend sqlite|postgresql|both] [--processes 1000000] [--only f,r]

Per backend: a fresh database (a SQLite file in a temporary folder, or a PostgreSQL database made on the
server of ``--pg-url`` and dropped at the end) holding the demo team, N leads and their customer records
(``search_data.py``); the queries are in ``search_cases.py``. The real server runs as a subprocess; one client
takes the queries in turn, one request each, and times every request through HTTP and then, at once, the exact
SQL the app sent for it (captured by running the same code in this process) replayed on a driver connection.
Prints a table per backend (milliseconds), whether p95 < 30 ms holds for a 50-row page (50 ms for a text
search), and the plan of every list query. The attributes ``score`` and ``city`` are marked indexed through
the admin service once the rows are written, and their indexes built by the background task, as a worker
would: the time it took is printed. Everything runs on 127.0.0.1; every loop is bounded in count and time; the
server is stopped even on error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from common import fresh_database, serving
from search_cases import Call, Run, queries  # bench/search_cases.py, next to this file
from search_data import Demo, build, prepare

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.domain.clock import now_ms
from procession.engine.indexing import KIND as INDEXES
from procession.engine.tasks import run_task
from procession.services.commands import ListProcesses, ProcedureInput
from procession.services.common import Caller
from procession.services.configuration import define_procedure, get_procedure
from procession.services.reads import get_process, list_processes
from procession.store import tables as t
from procession.store.repositories.retention import RETENTION

PATH = "/v1/ext/procedure/lead/process"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P95_MS = 30.0
TEXT_P95_MS = 50.0  # a text search's (queries labelled f…)


# --- servers and databases -----------------------------------------------------------------------------


# --- measuring -----------------------------------------------------------------------------------------


def send(client: httpx.Client, call: Call) -> tuple[float, dict[str, Any]]:
    """The latency (ms) and the reply of one request; anything but a 200 is an error."""
    start = time.perf_counter()
    if call.body is not None:
        r = client.post(f"{PATH}/list", content=orjson.dumps(call.body))
    else:
        r = client.get(call.path or f"{PATH}/{'/'.join(call.ref)}")
    ms = (time.perf_counter() - start) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{call} answered {r.status_code}: {r.text[:500]}")
    return ms, orjson.loads(r.content)


Statements = list[tuple[str, Any]]


class Sql:
    """Captures the SQL the app sends for a call (run in this process) and replays it on a driver connection."""

    def __init__(self, svc: Services, demo: Demo) -> None:
        self.svc, self.demo = svc, demo
        self.captured: Statements | None = None
        self.cache: dict[bytes, Statements] = {}
        self.raw = svc.engine.raw_connection()
        sa.event.listen(svc.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if self.captured is not None and "FROM processes" in statement:
            self.captured.append((statement, params))

    def statements(self, call: Call) -> Statements:
        """The statements on ``processes`` the app runs for ``call``, in order."""
        if call.path is not None:
            return []
        key = orjson.dumps([call.body, call.ref])
        if key not in self.cache:
            self.captured = []
            caller = Caller(self.demo.team_id, "admin", self.demo.admin_id)
            if call.body is not None:
                self.svc.run(
                    list_processes,
                    caller,
                    "lead",
                    ListProcesses.model_validate(call.body),
                    cursor_key=self.svc.cursor_key,
                )
            else:
                self.svc.run(get_process, caller, "lead", call.ref)
            self.cache[key], self.captured = self.captured, None
        return self.cache[key]

    def replay(self, call: Call) -> float:
        """The milliseconds to run the call's statements and fetch every row."""
        statements = self.statements(call)
        if not statements:
            return 0.0
        cur = self.raw.cursor()
        start = time.perf_counter()
        for sql, params in statements:
            cur.execute(sql, params)
            cur.fetchall()
        ms = (time.perf_counter() - start) * 1000
        cur.close()
        self.raw.rollback()
        return ms

    def plan(self, call: Call) -> list[str]:
        """The plan of the search statement for ``call``: EXPLAIN QUERY PLAN, or EXPLAIN ANALYZE (PostgreSQL)."""
        sql, params = self.statements(call)[-1]
        cur = self.raw.cursor()
        try:
            if self.svc.settings.is_sqlite:
                cur.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                depth: dict[int, int] = {0: -1}
                lines = []
                for node, parent, _, detail in cur.fetchall():
                    depth[node] = depth.get(parent, -1) + 1
                    lines.append("  " * depth[node] + detail)
                return lines
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            return [row[0] for row in cur.fetchall()]
        finally:
            cur.close()
            self.raw.rollback()

    def close(self) -> None:
        sa.event.remove(self.svc.engine, "before_cursor_execute", self._record)
        self.raw.close()


def index_attributes(svc: Services, demo: Demo, short_ids: list[str]) -> str:
    """Mark ``short_ids`` of ``lead`` indexed through the admin service, and run the background task that
    builds their indexes, as a worker would: a line saying how long each part took."""
    started = time.perf_counter()
    lead = svc.run(get_procedure, demo.team_id, "lead")
    body = {k: v for k, v in lead.items() if k in ProcedureInput.model_fields}
    body["attributes"] = [a | {"indexed": a["shortId"] in short_ids} for a in lead["attributes"]]
    saved = svc.run(define_procedure, demo.team_id, ProcedureInput.model_validate(body), ref="lead")
    defined = time.perf_counter()
    with svc.engine.connect() as conn:
        c = t.tasks.c
        tasks = conn.scalars(sa.select(c.id).where(c.kind == INDEXES, c.status == "PENDING")).all()
    for task_id in tasks:
        run_task(svc.uows, svc.kinds, task_id)
    built = time.perf_counter()
    states = svc.run(get_procedure, demo.team_id, "lead")["indexes"]
    if set(states.values()) != {"ready"}:
        raise RuntimeError(f"indexes not ready: {states}")
    return (
        f"indexed {', '.join(short_ids)}: definition saved in {(defined - started) * 1000:.0f} ms "
        f"({saved['indexes']}), indexes built in {built - defined:.1f} s"
    )


def upkeep(svc: Services, demo: Demo) -> str:
    """Run the team's retention task while it is due at once, as a worker does (from the first round, which
    comes an hour after a team is made: brought forward here): on SQLite its rounds merge the text index
    (``words.tidy``). A line saying how long it took."""
    started, turns, c = time.perf_counter(), 0, t.tasks.c
    with svc.engine.begin() as conn:
        mine = (c.team_id == demo.team_id) & (c.kind == RETENTION) & (c.status == "PENDING")
        conn.execute(t.tasks.update().where(mine).values(wake_at=now_ms()))
    while turns < 10_000:
        with svc.engine.connect() as conn:
            task = conn.execute(
                sa.select(c.id, c.wake_at).where(
                    c.team_id == demo.team_id, c.kind == RETENTION, c.status == "PENDING"
                )
            ).one()
        if task.wake_at > now_ms():
            break
        run_task(svc.uows, svc.kinds, task.id)
        turns += 1
    took = time.perf_counter() - started
    return (
        f"upkeep: {turns} rounds of the retention task (on SQLite they merge the text index) in {took:.1f} s"
    )


def measure(client: httpx.Client, sql: Sql, runs: list[Run], budget: float) -> None:
    """Round robin over the queries, one call each turn, timed through HTTP and then as SQL, back to back
    (so both see the same machine), until a query runs out of calls or of its time budget."""
    live = list(runs)
    while live:
        for run in list(live):
            try:
                call = run.stream.send(run.reply) if run.spent < budget else None
            except StopIteration:
                call = None
            if call is None:
                live.remove(run)
                continue
            start = time.monotonic()
            ms, run.reply = send(client, call)
            db = sql.replay(call)
            run.spent += time.monotonic() - start
            if run.warmup:
                run.warmup -= 1
                continue
            run.calls.append(call)
            run.http.append(ms)
            run.db.append(db)


# --- the report ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    done = sorted(values) or [float("nan")]
    return done[int(q * (len(done) - 1))]


def target(label: str) -> float:
    return TEXT_P95_MS if label.startswith("f") else TARGET_P95_MS


def ratio(http: list[float], db: list[float]) -> str:
    return f"{pct(http, 0.5) / pct(db, 0.5):.1f}x" if pct(db, 0.5) > 0 else "-"


def report(backend: str, runs: list[Run], deep: int) -> None:
    """The latency table; a cursor walk also gets rows for its first and last ``deep`` pages."""
    rows: list[tuple[str, list[float], list[float], bool]] = []
    for run in runs:
        rows.append((run.label, run.http, run.db, run.page))
        if " walk" in run.label and len(run.http) >= 2 * deep:
            end = len(run.http)
            rows.append((f"{run.label[:2]} pages 1-{deep}", run.http[:deep], run.db[:deep], True))
            rows.append(
                (f"{run.label[:2]} pages {end - deep + 1}-{end}", run.http[-deep:], run.db[-deep:], True)
            )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{backend}: latency in ms, one client, HTTP then the same SQL back to back (load average {load})"
    )
    head = f"{'query':<42}{'n':>5}{'HTTP p50':>10}{'p95':>8}{'p99':>8}{'DB p50':>9}{'p95':>8}{'HTTP/DB':>9}"
    print(f"{head}  p95<{TARGET_P95_MS:g} ({TEXT_P95_MS:g} for f…)")
    for label, http, db, page in rows:
        verdict = ("yes" if pct(http, 0.95) < target(label) else "NO") if page else "-"
        print(
            f"{label:<42}{len(http):>5}{pct(http, 0.5):>10.1f}{pct(http, 0.95):>8.1f}{pct(http, 0.99):>8.1f}"
            f"{pct(db, 0.5):>9.2f}{pct(db, 0.95):>8.2f}{ratio(http, db):>9}  {verdict}"
        )
    slow = [
        f"{label.split(' (')[0]} ({pct(h, 0.95):.0f} ms)"
        for label, h, _, p in rows
        if p and pct(h, 0.95) >= target(label)
    ]
    print(
        f"target p95 < {TARGET_P95_MS:g} ms ({TEXT_P95_MS:g} for a text search) through HTTP for a 50-row page: ",
        end="",
    )
    print("met" if not slow else "NOT met by " + "; ".join(slow))


def bench(backend: str, args: argparse.Namespace) -> None:
    """Build, serve, measure and report one backend; the server is stopped and the database dropped."""
    with (
        tempfile.TemporaryDirectory(prefix="procession-search-") as tmp_name,
        fresh_database(backend, Path(tmp_name), pg_server=args.pg_url) as url,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=url)
        svc = bootstrap(settings)
        sql: Sql | None = None
        try:
            demo = prepare(svc)
            sample, built = build(svc, demo, args.processes)
            print(f"\n=== {backend}: {built}", flush=True)
            print(f"=== {backend}: {index_attributes(svc, demo, ['score', 'city'])}", flush=True)
            print(f"=== {backend}: {upkeep(svc, demo)}", flush=True)
            runs, sql = queries(sample, args), Sql(svc, demo)
            headers = {"Authorization": f"Bearer {demo.key}", "Content-Type": "application/json"}
            with (
                serving(
                    [sys.executable, "-m", "procession.cli", "serve"],
                    {
                        **os.environ,
                        "PROCESSION_DATABASE_URL": url,
                        "PROCESSION_DATA_DIR": str(settings.data_dir),
                        "PROCESSION_EMBEDDED_WORKER": "false",
                    },
                    tmp / "server.log",
                ) as (server, _),
                httpx.Client(base_url=server, headers=headers, timeout=120) as client,
            ):
                measure(client, sql, runs, args.budget)
            report(backend, runs, args.deep)
            print(f"\n{backend}: query plans (a cursor walk: its last page)")
            for run in runs:
                if run.page and run.calls:
                    print(f"\n{run.label.split(' (')[0]}")
                    print("\n".join("    " + line for line in sql.plan(run.calls[-1])))
        finally:
            if sql is not None:
                sql.close()
            svc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--processes", type=int, default=1_000_000, help="lead processes to write")
    parser.add_argument("--requests", type=int, default=300, help="requests per query (default 300)")
    parser.add_argument("--pages", type=int, default=200, help="pages per cursor walk (default 200)")
    parser.add_argument("--deep", type=int, default=20, help="a walk's first and last pages, apart")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per query at most (default 60)")
    parser.add_argument("--only", help="the queries whose labels start with these, e.g. f,r (default: all)")
    parser.add_argument("--pg-url", default=PG_URL, help="a PostgreSQL server (its database is ignored)")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # unwind, so the server stops and the database goes
        signal.signal(signum, lambda signum, _frame: sys.exit(128 + signum))
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
