"""Benchmark of List/Search on a big table: latency through HTTP next to the same SQL run on the database.

    .venv/bin/python bench/search.py [--backend sqlite|postgresql|both] [--processes 1000000]

Per backend: a fresh database (a SQLite file in a temporary folder, or a PostgreSQL database made on the
server of ``--pg-url`` and dropped at the end) holding the demo team and N leads (``search_data.py``). The
real server runs as a subprocess; one client takes the queries in turn, one request each, and times every
request through HTTP and then, at once, the exact SQL the app sent for it (captured by running the same
code in this process) replayed on a driver connection. Prints a table per backend (milliseconds), whether
p95 < 30 ms holds for a 50-row page (50 ms for a text search), and the plan of every list query. The
attributes ``score`` and ``city`` are marked indexed through the admin service once the rows are written,
and their indexes built by the background task, as a worker would: the time it took is printed.
Everything runs on 127.0.0.1; every loop is bounded in count and time; the server is stopped even on error.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from common import fresh_database, serving
from search_data import Demo, build, prepare  # bench/search_data.py, next to this file

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.engine.indexing import KIND as INDEXES
from procession.engine.tasks import run_task
from procession.services.commands import ListProcesses, ProcedureInput
from procession.services.common import Caller
from procession.services.configuration import define_procedure, get_procedure
from procession.services.reads import get_process, list_processes
from procession.store import tables as t

PATH = "/v1/ext/procedure/lead/process"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CITY = "Kochi"  # the city filtered on (about 2% of the rows, like every city)
TARGET_P95_MS = 30.0
TEXT_P95_MS = 50.0  # a text search's (queries labelled f…)
WARMUP = 5  # first requests of a repeated query, not recorded


# --- servers and databases -----------------------------------------------------------------------------


# --- measuring -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request: a list/search body, a read by ``(id,)`` or ``("lead_id", value)``, or another path."""

    body: dict[str, Any] | None = None
    ref: tuple[str, ...] = ()
    path: str | None = None  # a GET that reads no process


# A query's calls, one at a time; each reply is sent back in, so a walk can follow its cursor.
Stream = Generator[Call, dict[str, Any] | None, None]


def repeat(calls: Iterable[Call]) -> Stream:
    for call in calls:
        _reply = yield call  # not needed: the next call does not depend on it


def walk(body: dict[str, Any], pages: int) -> Stream:
    """Follow ``_meta.nextCursor`` from the first page, for ``pages`` pages at most."""
    call = Call(body)
    for _ in range(pages):
        reply = yield call
        cursor = reply["_meta"]["nextCursor"] if reply else None
        if cursor is None:
            return
        call = Call({**body, "cursor": cursor})


@dataclass
class Run:
    """One query: its calls, their latencies (ms) through HTTP and as SQL, and the time spent on it."""

    label: str
    stream: Stream
    page: bool = True  # a 50-row page, held to the target
    warmup: int = WARMUP  # first calls not recorded
    calls: list[Call] = field(default_factory=list)
    http: list[float] = field(default_factory=list)
    db: list[float] = field(default_factory=list)
    spent: float = 0.0
    reply: dict[str, Any] | None = None


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


def queries(sample: list[tuple[str, str]], args: argparse.Namespace) -> list[Run]:
    """The queries measured, each with the calls it makes."""
    n, pages = args.requests + WARMUP, args.pages
    newest = {"limit": 50}
    state = {"where": {"state": "IN_PROGRESS", "status": "OPEN"}, **newest}
    score = {"where": {"score": {">=": 90}}, "sort": [{"field": "score", "dir": "desc"}], **newest}
    refs = list(itertools.islice(itertools.cycle(sample), n))
    lead_id = sample[len(sample) // 2][1]

    def same(body: dict[str, Any]) -> Stream:
        return repeat([Call(body)] * n)

    def same_path(path: str) -> Stream:
        return repeat([Call(path=path)] * n)

    return [
        Run("a  state=IN_PROGRESS, status=OPEN", same(state)),
        Run(f"b1 city={CITY}", same({"where": {"city": CITY}, **newest})),
        Run("b2 score>=90, sort score desc", same(score)),
        Run("b3 score=42 (indexed, equality)", same({"where": {"score": 42}, **newest})),
        Run(
            "b4 40<=score<45, sort score asc",
            same({"where": {"score": {">=": 40, "<": 45}}, "sort": [{"field": "score"}], **newest}),
        ),
        Run("b5 sort score desc (no filter)", same({"sort": [{"field": "score", "dir": "desc"}], **newest})),
        Run(
            "b6 cursor walk, sort score desc",
            walk({"sort": [{"field": "score", "dir": "desc"}], **newest}, pages),
            warmup=0,
        ),
        Run("f1 q=Mosby (1 in 12)", same({"q": "Mosby", **newest})),
        Run("f2 q=Ted Mosby (1 in 180)", same({"q": "Ted Mosby", **newest})),
        Run(f"f3 q={lead_id} (one)", same({"q": lead_id, **newest})),
        Run("f4 q=Ted Mosby, city=Kochi", same({"q": "Ted Mosby", "where": {"city": CITY}, **newest})),
        Run(f"c1 cursor walk, newest first ({pages} pages)", walk(newest, pages), warmup=0),
        Run(
            f"c2 cursor walk, state=NEW ({pages} pages)",
            walk({"where": {"state": "NEW"}, **newest}, pages),
            warmup=0,
        ),
        Run("d1 skip=0", same({**newest, "skip": 0})),
        Run("d2 skip=1,000", same({**newest, "skip": 1_000})),
        Run("d3 skip=10,000", same({**newest, "skip": 10_000})),
        Run("e1 GET by id", repeat(Call(ref=(id,)) for id, _ in refs), page=False),
        Run("e2 GET by lead_id", repeat(Call(ref=("lead_id", pk)) for _, pk in refs), page=False),
        Run("z  GET /healthz (HTTP floor, no SQL)", same_path("/healthz"), page=False),
    ]


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
    parser.add_argument("--pg-url", default=PG_URL, help="a PostgreSQL server (its database is ignored)")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # unwind, so the server stops and the database goes
        signal.signal(signum, lambda signum, _frame: sys.exit(128 + signum))
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
