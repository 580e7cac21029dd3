"""Scale-out under sustained mixed load on PostgreSQL: two ``procession serve`` and two ``procession worker``
processes against one of each, the same traffic for the same time.

    .venv/bin/python bench/load.py [--duration 600] [--clients 32] [--pairs 1,2] [--pg-server URL]

Per configuration (N pairs; 1 then 2 by default), in one run: a fresh PostgreSQL database with the demo team
and an admin key; the fake receiver (``tests/fakes/receiver.py``) as an automation's endpoint; N ``serve``
processes (embedded worker off) and N ``worker`` processes, sharing the data folder (so one secret key);
an automation on ``lead`` (manual trigger) whose one ``http`` step POSTs to the receiver; 200 leads made
before the clock starts. Then ``--clients`` closed-loop clients for ``--duration`` seconds, each request
sent to the servers in turn, drawn by weight:

    create 30  update 30 (a lead's score)  list 28 (50 newest of a state)  run 10 (an automation run by hand)
    bulk 2 (a bulk update of 200 leads: PATCH, 202)

After the clock stops, the background work is waited for (up to 5 minutes): every bulk job finished, every
run finished. Printed: per operation its count, rate, p50 and p99 (ms) and errors (any status but the one
expected, a timeout, a lost connection); the background work's outcome (job entries applied and in error,
runs succeeded and not); the CPU time each tier used during the traffic (the servers, the workers, PostgreSQL,
the load generator), as cores kept busy and as milliseconds per request: the figures a capacity plan scales;
and, with both configurations, each rate of N=2 over N=1 (the gain from the second pair). Errors are expected to be zero; the script exits 1 if there is any.

The machine's cores bound what a second pair can add: on a 2-core machine the load generator, PostgreSQL,
the servers and the workers share them, so the gain shows what the processes' own limits (one event loop
per server, a worker's concurrency) cost, not what a second machine would add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from automation import prepare  # bench/automation.py, next to this file
from bulk import max_worker_id
from common import PG_SERVER, free_port, fresh_database, process, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.fakes
from procession.config import Settings
from tests.fakes.receiver import Receiver

LEADS = "/v1/ext/procedure/lead/process"
WEIGHTS = {"create": 30, "update": 30, "list": 28, "run": 10, "bulk": 2}
BULK_ITEMS, SEED = 200, 200
DRAIN_S = 300.0
STATES = ("NEW", "IN_PROGRESS")
Tiers = dict[str, list[int]]  # a tier's processes


@dataclass
class Figures:
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the traffic, by tier
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[str, str] = field(default_factory=dict)  # an error of each operation, to show
    seconds: float = 0.0
    background: dict[str, int] = field(default_factory=dict)
    storage: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: rows, bytes with its indexes


@contextmanager
def cluster(url: str, env: dict[str, str], logs: Path, pairs: int) -> Iterator[tuple[list[str], Tiers]]:
    """``pairs`` servers and ``pairs`` workers, each ready: the servers' base URLs, and the processes of
    each tier."""
    cli = [sys.executable, "-m", "procession.cli"]
    bases: list[str] = []
    tiers: Tiers = {"serve": [], "worker": []}
    with ExitStack() as stack:
        for n in range(pairs):
            port = free_port()
            base, log = f"http://127.0.0.1:{port}", logs / f"server{n}.log"
            server = stack.enter_context(process([*cli, "serve", "--port", str(port)], env, log))
            wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, server, "serve", log)  # noqa: B023
            bases.append(base)
            tiers["serve"].append(server.pid)
        for n in range(pairs):
            before, log = max_worker_id(url), logs / f"worker{n}.log"
            worker = stack.enter_context(process([*cli, "worker"], env, log))
            wait_until(lambda: max_worker_id(url) > before, worker, f"worker {n}", log)  # noqa: B023
            tiers["worker"].append(worker.pid)
        yield bases, tiers


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _ticks(pid: int, fields: slice) -> int:
    """Fields of ``/proc/PID/stat`` summed (after the command's parentheses: utime, stime at 11:13;
    cutime, cstime, the children's that were waited for, at 13:15); 0 once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return sum(int(v) for v in stat.rsplit(")", 1)[1].split()[fields])


def cpu_seconds(tiers: Tiers) -> dict[str, float]:
    """CPU time used so far by each tier's processes, by PostgreSQL (every ``postgres`` process, and the
    backends that have exited, through their parent's children's time) and by this load generator."""
    used = {tier: sum(_ticks(pid, slice(11, 13)) for pid in pids) * TICK_S for tier, pids in tiers.items()}
    postgres = 0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                postgres += _ticks(int(comm.parent.name), slice(11, 15))
        except OSError:
            continue
    used["postgres"] = postgres * TICK_S
    mine = os.times()
    used["load generator"] = mine.user + mine.system
    return used


async def traffic(bases: list[str], key: str, automation: str, seconds: float, clients: int) -> Figures:
    figures = Figures()
    headers = {"Authorization": f"Bearer {key}"}
    # a connection idle 2 s is closed by the client, before the server closes it after its keep-alive (5 s):
    # reused at the moment the server closes it, a request would fail with no reply
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    http = [httpx.AsyncClient(base_url=b, headers=headers, timeout=30, limits=limits) for b in bases]
    leads: list[str] = []
    turn = 0

    def client() -> httpx.AsyncClient:
        nonlocal turn
        turn += 1
        return http[turn % len(http)]

    async def create(n: int) -> httpx.Response:
        record = {"data": {"phone_number": f"77{n:08d}", "email": f"lead{n}@example.com"}}
        r = await client().post(LEADS, json={"data": {"score": n % 100}, "record": record})
        if r.status_code == 201:
            leads.append(r.json()["_data"]["id"])
        return r

    async def update(n: int) -> httpx.Response:
        return await client().put(f"{LEADS}/{random.choice(leads)}", json={"data": {"score": n % 100}})

    async def listing(n: int) -> httpx.Response:
        body = {"where": {"state": random.choice(STATES)}, "limit": 50}
        return await client().post(f"{LEADS}/list", json=body)

    async def run(n: int) -> httpx.Response:
        return await client().post(f"{LEADS}/{random.choice(leads)}/automations/{automation}/run")

    async def bulk(n: int) -> httpx.Response:
        items = [
            {"id": i, "data": {"score": n % 100}} for i in random.sample(leads, min(BULK_ITEMS, len(leads)))
        ]
        return await client().patch(LEADS, json={"processes": items})

    operations = {"create": (create, 201), "update": (update, 200), "list": (listing, 200), "run": (run, 202)}
    operations["bulk"] = (bulk, 202)
    for n in range(SEED):
        await create(n)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    stop_at = time.monotonic() + seconds

    async def loop(who: int) -> None:
        n = who
        while time.monotonic() < stop_at:
            name = random.choices(names, weights)[0]
            send, expected = operations[name]
            started = time.perf_counter()
            try:
                r = await send(n)
                ok, said = r.status_code == expected, f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as e:
                ok, said = False, repr(e)
            figures.latencies[name].append((time.perf_counter() - started) * 1000)
            if not ok:
                figures.errors[name] += 1
                figures.samples.setdefault(name, said)
            n += clients

    began = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    figures.seconds = time.monotonic() - began
    for h in http:
        await h.aclose()
    return figures


UNSUCCESSFUL = (  # a run that did not succeed, with its attempts: what went wrong
    "SELECT r.id, r.status, r.error, string_agg(a.outcome || ' ' || coalesce(a.status_code::text, '-') || ' ' "
    "|| a.duration_ms || ' ms ' || coalesce(a.error, ''), '; ' ORDER BY a.id) FROM runs r "
    "LEFT JOIN run_attempts a ON a.run_id = r.id WHERE r.status <> 'SUCCEEDED' GROUP BY r.id LIMIT 3"
)


def drained(url: str, samples: dict[str, str]) -> dict[str, int]:
    """Once every job and run has finished (or after ``DRAIN_S``): how the background work ended; a run that
    did not succeed is described in ``samples``."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    deadline = time.monotonic() + DRAIN_S
    try:
        while True:
            with engine.connect() as conn:
                jobs = dict(conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status")).all())
                runs = dict(conn.execute(sa.text("SELECT status, count(*) FROM runs GROUP BY status")).all())
                entries = conn.execute(sa.text("SELECT sum(succeeded), sum(errored) FROM jobs")).one()
            waiting = jobs.get("NOT_STARTED", 0) + jobs.get("IN_PROGRESS", 0)
            waiting += sum(runs.get(s, 0) for s in ("PENDING", "RUNNING", "WAITING"))
            if not waiting or time.monotonic() > deadline:
                with engine.connect() as conn:
                    for run_id, status, error, attempts in conn.execute(sa.text(UNSUCCESSFUL)):
                        samples[f"run {run_id}"] = f"{status} {error or ''}; attempts: {attempts}"
                return {
                    "jobs": sum(jobs.values()),
                    "jobs unfinished or failed": sum(v for k, v in jobs.items() if k != "COMPLETED"),
                    "entries applied": int(entries[0] or 0),
                    "entries in error": int(entries[1] or 0),
                    "runs succeeded": runs.get("SUCCEEDED", 0),
                    "runs not succeeded": sum(v for k, v in runs.items() if k != "SUCCEEDED"),
                }
            time.sleep(1)
    finally:
        engine.dispose()


TASK_ENGINE_POOL = 10  # a worker's connections besides its engine's: procrastinate's pool and its listener


def connections_each(url: str, pairs: int) -> int:
    """What each of the ``2 * pairs`` processes may open: the server's ``max_connections``, less 10 (its
    reserved ones, this script's), less each worker's task engine pool, shared out."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        most = int(conn.execute(sa.text("SHOW max_connections")).scalar_one())
    engine.dispose()
    return max(2, (most - 10 - TASK_ENGINE_POOL * pairs) // (2 * pairs))


def configuration(pairs: int, args: argparse.Namespace) -> Figures:
    with (
        tempfile.TemporaryDirectory(prefix="procession-load-") as tmp_name,
        fresh_database("postgresql", Path(tmp_name), args.pg_server) as url,
        Receiver() as receiver,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=url)
        key = prepare(settings)
        env = {
            **os.environ,
            "PROCESSION_DATA_DIR": str(settings.data_dir),
            "PROCESSION_DATABASE_URL": url,
            "PROCESSION_OUTBOUND_ALLOW": "127.0.0.1",
            "PROCESSION_EMBEDDED_WORKER": "false",
            "PROCESSION_DB_CONNECTIONS": str(connections_each(url, pairs)),
        }
        with cluster(url, env, tmp, pairs) as (bases, tiers):
            step = {"name": "post", "type": "http", "method": "POST", "url": f"{receiver.url}/hook"}
            body = {"name": "notify", "trigger": {"type": "manual"}, "steps": [step]}
            r = httpx.post(
                f"{bases[0]}/v1/admin/procedures/lead/automations",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            r.raise_for_status()
            print(
                f"[{pairs} pair(s)] up; {args.duration:.0f} s of traffic, {args.clients} clients, "
                f"{env['PROCESSION_DB_CONNECTIONS']} database connections at most per process",
                flush=True,
            )
            before = cpu_seconds(tiers)
            figures = asyncio.run(traffic(bases, key, r.json()["_data"]["id"], args.duration, args.clients))
            after = cpu_seconds(tiers)
            figures.cpu = {tier: after[tier] - before[tier] for tier in after}
            figures.background = drained(url, figures.samples)
            figures.storage = storage(url)
        if figures.errors:  # the servers' and workers' own account, before their folder goes
            for log in sorted(tmp.glob("*.log")):
                said = [
                    line
                    for line in log.read_text(errors="replace").splitlines()
                    if "warn" in line.lower() or "error" in line.lower()
                ]
                for line in said[-5:]:
                    print(f"  {log.stem}: {line[:400]}")
    return figures


STORED = ("processes", "records", "events", "runs", "run_attempts", "job_entries")


def storage(url: str) -> dict[str, tuple[int, int]]:
    """Each of ``STORED``'s rows and bytes (the table, its indexes and TOAST), once VACUUM ANALYZE ran."""
    engine = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    found = {}
    try:
        with engine.connect() as conn:
            for table in STORED:
                conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
                rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                size = conn.execute(sa.text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
                found[table] = (rows, size)
    finally:
        engine.dispose()
    return found


def report(pairs: int, f: Figures) -> dict[str, float]:
    total = sum(len(v) for v in f.latencies.values())
    print(
        f"\n== {pairs} serve + {pairs} worker: {total / f.seconds:,.0f} requests/s over {f.seconds:.0f} s =="
    )
    print(f"{'operation':10} {'count':>8} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    rates = {"all": total / f.seconds}
    for name in WEIGHTS:
        lat = sorted(f.latencies.get(name, []))
        if not lat:
            continue
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rates[name] = len(lat) / f.seconds
        print(
            f"{name:10} {len(lat):8,} {rates[name]:8,.1f} {statistics.median(lat):8.1f} {p99:8.1f} "
            f"{f.errors.get(name, 0):7}"
        )
    for name, said in f.samples.items():
        print(f"  first {name} error: {said}")
    print("background: " + ", ".join(f"{k} {v:,}" for k, v in f.background.items()))
    print(
        "storage (rows; bytes a row, indexes included): "
        + ", ".join(f"{t} {n:,}; {size / n:,.0f}" for t, (n, size) in f.storage.items() if n)
    )
    print(
        "CPU during the traffic, seconds (cores busy; ms per request): "
        + ", ".join(
            f"{tier} {used:,.0f} ({used / f.seconds:.2f}; {1000 * used / total:.2f})"
            for tier, used in f.cpu.items()
        )
    )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic per configuration")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--pairs", default="1,2", help="configurations: serve+worker pairs, comma-separated")
    parser.add_argument("--pg-server", default=PG_SERVER)
    args = parser.parse_args()
    results = {}
    for pairs in (int(p) for p in args.pairs.split(",")):
        figures = configuration(pairs, args)
        results[pairs] = (report(pairs, figures), figures)
    errors = sum(sum(f.errors.values()) for _, f in results.values())
    errors += sum(
        f.background["jobs unfinished or failed"] + f.background["entries in error"]
        for _, f in results.values()
    )
    errors += sum(f.background["runs not succeeded"] for _, f in results.values())
    if 1 in results and 2 in results:
        one, two = results[1][0], results[2][0]
        gains = ", ".join(f"{k} {two[k] / one[k]:.2f}" for k in one if k in two and one[k])
        print(f"\ngain from the second pair (rate with 2 / rate with 1): {gains}")
    print(f"errors: {errors} (goal 0); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
