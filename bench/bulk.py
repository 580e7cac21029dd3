"""Benchmark of bulk update: the real path over HTTP against the database's own limit for the same writes.

    .venv/bin/python bench/bulk.py [--backend sqlite|postgresql|both] [--entries 100000]

Per backend, in one run: a fresh database (a SQLite file in a temporary folder, or a PostgreSQL database
made for the run and dropped at the end) set up with the demo team, an admin key and 10,000 leads (then, on
PostgreSQL, analyzed). Every measured run below starts from its own copy of that database (a file copy;
``CREATE DATABASE … TEMPLATE``), so none of them writes to a file or tables that earlier runs grew.
``PATCH /v1/ext/procedure/lead/process`` jobs (3 attributes merged and a state change per entry) of 10,000,
20,000 and N entries, each on a freshly started ``procession serve`` (on PostgreSQL with one ``procession
worker``): the time to the 202, entries/s from submission to completion (the job's ``finishedAt``), entry
statuses, and peak memory (RssAnon, sampled) against that before submission. The same row writes with plain SQL (``bulk_sql.py``) just before each of the
three N-entry jobs: the ratio is the median of those three pairs' ratios, each pair run on the machine as it
was that minute (it is shared, and its speed drifts). For reference, once each: the plain SQL with the two
events a state change writes (the limit has one, as the target defines it) and, on SQLite, with a background
checkpoint. Everything runs on 127.0.0.1; every wait is bounded; servers and workers are stopped even on
error. Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from bulk_sql import Target, postgres_limit, sqlite_limit
from common import free_port, fresh_database, process, wait_until

from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.services.commands import CreateProcess
from procession.services.common import Caller
from procession.services.processes import create_in
from procession.services.teams import create_key
from procession.services.templates import seed_demo

PATH = "/v1/ext/procedure/lead/process"
LEADS, PROBE, SMALL = 10_000, 10_000, 20_000
JOB_DEADLINE_S, STALL_S, POLL_S = 600.0, 120.0, 0.5
CITIES = ("Osaka", "Mumbai", "Lyon", "Porto", "Austin")
SOURCES = ("web-form", "referral", "event")
TARGET_RATIO, TARGET_REPLY_S = 0.70, 1.0
TWO_EVENTS = "two events per entry (reference)"
TURNS = 3  # N-entry app jobs, each after a plain-SQL run: the ratio is the median of the pairs' ratios
BOUNDED = (1.5, 16.0)  # memory is bounded if growth(N) <= 1.5 x growth(20,000) + 16 MiB (linear: 5x)


@dataclass
class JobRun:
    entries: int
    reply_s: float  # request sent -> 202 received
    total_s: float  # request sent -> the job's finishedAt
    status: str
    counts: dict[str, int]
    memory: dict[str, tuple[float, float, float]]  # process -> RSS before, peak at the 202, peak at the end
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.entries / self.total_s

    @property
    def apply_rate(self) -> float:
        """Entries/s from the 202 to completion: the background half alone."""
        return self.entries / (self.total_s - self.reply_s)

    def growth(self, name: str) -> float:
        before, _, peak = self.memory[name]
        return peak - before


def entries(lead_ids: list[str], n: int) -> list[dict[str, Any]]:
    """``n`` entries over the leads in turn (so 1,000 in a row name 1,000 leads), each moving its lead between
    NEW and IN_PROGRESS as the graph allows, from the leads as set up (all NEW): every run starts there."""
    out = []
    for i in range(n):
        turn, k = divmod(i, len(lead_ids))
        data = {"score": i, "city": CITIES[i % len(CITIES)], "source": SOURCES[i % len(SOURCES)]}
        out.append({"lead_id": lead_ids[k], "data": data, "state": "NEW" if turn % 2 else "IN_PROGRESS"})
    return out


# setup -------------------------------------------------------------------------------------------------


def prepare(settings: Settings) -> tuple[str, Target, list[str]]:
    """Migrate, seed the demo team, make an admin key and LEADS leads: (key, target, lead ids)."""
    svc = bootstrap(settings)
    try:
        team_id = svc.run(seed_demo)
        key = svc.run(create_key, team_id, role="admin", username="admin", label="bench")
        with svc.uows.read(team_id) as uow:
            procedure = uow.procedures.get("lead")
            admin = Caller(team_id, "admin", uow.users.id_of("admin"))
        assert procedure is not None
        target = Target(
            team_id=team_id,
            procedure_id=procedure.id,
            attributes={a.short_id: a.id for a in procedure.attributes},
            states={s.short_id: s.id for s in procedure.states},
        )
        lead_ids = []
        for start in range(0, LEADS, 1000):
            with svc.uows.write(team_id) as uow:
                for i in range(start, min(start + 1000, LEADS)):
                    cmd = CreateProcess(data={"firstname": "Ted", "lastname": f"Mosby {i}", "city": "Osaka"})
                    lead_ids.append(create_in(uow, admin, "lead", cmd)["data"]["lead_id"])
                uow.commit()
        if not settings.is_sqlite:  # statistics as autovacuum keeps them, not those of empty tables
            with svc.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        return key, target, lead_ids
    finally:
        svc.close()


# the application over HTTP -----------------------------------------------------------------------------


def anon_mib(pid: int) -> float:
    """``RssAnon`` of a process, in MiB: its own memory, without the pages of files it maps (SQLite maps
    its database file, and those pages are the kernel's page cache, shared and droppable)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RssAnon for process {pid}")


class AnonPeak:
    """The highest ``RssAnon`` of each process, sampled every 20 ms while in use."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.peak = pids, {name: anon_mib(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], anon_mib(pid))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def max_worker_id(url: str) -> int:
    """The newest procrastinate worker registration (a worker registers once it is up)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT coalesce(max(id), 0) FROM procrastinate_workers")) or 0)
    finally:
        engine.dispose()


@contextmanager
def running(url: str, env: dict[str, str], logs: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """``procession serve`` (and on PostgreSQL one ``procession worker``), ready: (base URL, name -> pid)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "procession.cli"]
    with ExitStack() as stack:
        server = stack.enter_context(process([*cli, "serve", "--port", str(port)], env, logs / "server.log"))
        wait_until(
            lambda: httpx.get(f"{base}/healthz").status_code == 200, server, "serve", logs / "server.log"
        )
        pids = {"server": server.pid}
        if not url.startswith("sqlite"):
            before = max_worker_id(url)
            worker = stack.enter_context(process([*cli, "worker"], env, logs / "worker.log"))
            wait_until(lambda: max_worker_id(url) > before, worker, "worker", logs / "worker.log")
            pids["worker"] = worker.pid
        yield base, pids


def poll(client: httpx.Client, job_id: str, deadline: float) -> dict[str, Any]:
    """The job once it is finished; RuntimeError on the deadline or STALL_S without progress."""
    last, moved = None, time.monotonic()
    while time.monotonic() < deadline:
        r = client.get(f"/v1/ext/background-job/{job_id}")
        if r.status_code != 200:
            raise RuntimeError(f"GET job: {r.status_code} {r.text[:500]}")
        job = r.json()["_data"]
        if job["status"] in ("COMPLETED", "FAILED", "ABORTED"):
            return dict(job)
        if job["counts"] != last:
            last, moved = job["counts"], time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            raise RuntimeError(f"job {job_id} made no progress for {STALL_S:.0f} s: {job}")
        time.sleep(POLL_S)
    raise RuntimeError(f"job {job_id} not finished within {JOB_DEADLINE_S:.0f} s: {last}")


def failures(client: httpx.Client, job_id: str) -> list[str]:
    """The first entries that are not SUCCESS, with their errors."""
    out = []
    for status in ("ERROR", "INVALID", "NOT_STARTED"):
        r = client.get(f"/v1/ext/background-job/{job_id}/entries", params={"status": status, "limit": 5})
        for e in r.json()["_data"] if r.status_code == 200 else []:
            out.append(f"#{e['index']} {e['status']}: {orjson.dumps(e['errors']).decode()[:300]}")
    return out


def run_job(base: str, key: str, pids: dict[str, int], entries: list[dict[str, Any]]) -> JobRun:
    """Submit one bulk update, wait for it to finish: timings, statuses and memory."""
    body = orjson.dumps({"processes": entries})
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=JOB_DEADLINE_S) as client:
        client.get("/v1/ext/config").raise_for_status()  # warm: imports, connections, the key
        before = {name: anon_mib(pid) for name, pid in pids.items()}
        with AnonPeak(pids) as sampled:
            sent_wall, sent = time.time(), time.monotonic()
            r = client.patch(PATH, content=body, headers={"Content-Type": "application/json"})
            reply_s = time.monotonic() - sent
            at_reply = dict(sampled.peak)
            if r.status_code != 202:
                raise RuntimeError(
                    f"bulk update of {len(entries):,} entries: {r.status_code} {r.text[:1000]}"
                )
            job = poll(client, r.json()["_data"]["id"], sent + JOB_DEADLINE_S)
        peak = sampled.peak
        counts = {k: v for k, v in job["counts"].items() if v}
        errors = [] if counts == {"SUCCESS": len(entries)} else failures(client, job["id"])
    return JobRun(
        entries=len(entries),
        reply_s=reply_s,
        total_s=job["finishedAt"] / 1000 - sent_wall,
        status=job["status"],
        counts=counts,
        memory={name: (before[name], at_reply[name], peak[name]) for name in pids},
        errors=errors,
    )


# one backend -------------------------------------------------------------------------------------------


@dataclass
class Report:
    backend: str
    entries: int
    jobs: list[JobRun]
    limits: list[tuple[str, float]]  # (label, seconds for N entries): one per big job, run just before it
    extras: list[tuple[str, float]]  # other plain-SQL variants, for reference
    loads: list[float]  # 1-minute load averages seen at each step (other work on the machine)


def bench(backend: str, n: int) -> Report:
    loads: list[float] = []

    def say(message: str) -> None:
        loads.append(os.getloadavg()[0])
        print(f"[{backend}] {message}  (load {loads[-1]:.1f})", flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="procession-bulk-") as tmp_name,
        fresh_database(backend, Path(tmp_name)) as set_up,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=set_up)
        started = time.monotonic()
        key, target, lead_ids = prepare(settings)
        say(f"set up: demo team, key, {len(lead_ids):,} leads in {time.monotonic() - started:.0f} s")
        job_entries = entries(lead_ids, n)

        def copy() -> Any:  # every measured run starts from the same rows: a copy of the set-up database
            return fresh_database(backend, tmp, like=set_up)

        def plain_sql(checkpointer: bool = False, events: int = 1) -> float:
            with copy() as url:
                if backend == "sqlite":
                    path = Path(sa.make_url(url).database or "")
                    return sqlite_limit(path, target, job_entries, checkpointer=checkpointer, events=events)
                conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
                return postgres_limit(conninfo, target, job_entries, events=events)

        def limit(label: str, checkpointer: bool = False, events: int = 1) -> tuple[str, float]:
            seconds = plain_sql(checkpointer, events)
            say(f"DB limit, {label}: {n / seconds:,.0f} entries/s")
            return label, seconds

        def app(size: int) -> JobRun:
            logs = tmp / f"logs-{next(runs)}"
            logs.mkdir(exist_ok=True)
            with copy() as url:
                env = {
                    **os.environ,
                    "PROCESSION_DATA_DIR": str(settings.data_dir),
                    "PROCESSION_DATABASE_URL": url,
                }
                with running(url, env, logs) as (base, pids):
                    run_job(base, key, pids, warm)
                    job = run_job(base, key, pids, job_entries[:size])
            say(
                f"HTTP job of {size:,}: 202 in {job.reply_s:.2f} s, {job.rate:,.0f} entries/s, "
                f"{job.status} {job.counts}"
            )
            for error in job.errors:
                print(f"    {error}")
            return job

        jobs: list[JobRun] = []
        runs = itertools.count()
        warm = [{"lead_id": lead_ids[0], "data": {"score": 0}}]  # the first bulk request's one-off costs
        jobs += [app(PROBE), app(SMALL)]
        limits = []
        for turn in range(1, TURNS + 1):  # the plain SQL, then the app: each pair sees the machine alike
            limits.append(limit(f"plain SQL, turn {turn}"))
            jobs.append(app(n))
        extras = [limit(TWO_EVENTS, events=2)]
        if backend == "sqlite":
            extras.append(limit("+ background checkpoint (reference)", checkpointer=True))
        return Report(backend, n, jobs, limits, extras, loads)


# the table ---------------------------------------------------------------------------------------------


def mem(job: JobRun, name: str) -> str:
    if name not in job.memory:
        return "-"
    before, at_reply, peak = job.memory[name]
    return f"{at_reply:,.0f} / {peak:,.0f} (+{peak - before:,.0f})"


def show(r: Report) -> bool:
    """Print the backend's table and targets; True if every job completed with every entry SUCCESS."""
    names = ["server", "worker"] if r.backend == "postgresql" else ["server"]
    print(
        f"\n== {r.backend}: bulk update, 3 attributes merged + a state change per entry, {LEADS:,} leads =="
    )
    head = f"{'measure':<46}{'entries':>9}{'202 reply':>11}{'to done':>10}{'entries/s':>11}{'after 202':>11}"
    head += "".join(f"{n + ' MiB @202 / @done (+growth)':>36}" for n in names)
    print(head + "  statuses")
    for job in r.jobs:
        line = f"{'app: PATCH over HTTP -> COMPLETED':<46}{job.entries:>9,}{job.reply_s:>9.2f} s"
        line += f"{job.total_s:>8.1f} s{job.rate:>11,.0f}{job.apply_rate:>11,.0f}"
        line += "".join(f"{mem(job, n):>36}" for n in names)
        counts = " ".join(f"{k} {v:,}" for k, v in job.counts.items())
        print(f"{line}  {job.status}: {counts}")
    for label, seconds in r.limits + r.extras:
        print(
            f"{'DB limit, ' + label:<46}{r.entries:>9,}{'-':>11}{seconds:>8.1f} s{r.entries / seconds:>11,.0f}"
        )
    print(
        "(entries/s: from sending the request to the job's finishedAt; after 202: from the reply to finishedAt;"
        " MiB: peak RssAnon at the 202 and at the end, growth over that before submitting)"
    )

    probe, small, *bigs = r.jobs
    big = max(bigs, key=lambda j: j.rate)
    # each N-entry job against the plain-SQL run just before it, on a machine whose speed drifts from one
    # minute to the next: the median of those ratios (best against best would compare two lucky draws)
    turns = [job.rate * seconds / r.entries for job, (_, seconds) in zip(bigs, r.limits, strict=True)]
    ratio = statistics.median(turns)
    best = max(r.entries / s for _, s in r.limits)
    met = {True: "met", False: "NOT met"}
    print(
        f"\nratio app / DB limit ({r.entries:,} entries; each turn's app run against its plain-SQL run: "
        f"{', '.join(f'{t:.2f}' for t in turns)}; best against best {big.rate:,.0f} / {best:,.0f}/s = "
        f"{big.rate / best:.2f}): median {ratio:.2f}  -> target >= {TARGET_RATIO:.2f}: {met[ratio >= TARGET_RATIO]}"
    )
    two_events = dict(r.extras)[TWO_EVENTS]
    print(
        f"  for reference, the app's median run against the plain SQL with the two events a state change writes "
        f"(process.updated and process.state_changed, as the app does): "
        f"{statistics.median(j.rate for j in bigs) * two_events / r.entries:.2f}"
    )
    print(
        f"202 for {probe.entries:,} entries: {probe.reply_s:.2f} s"
        f"  -> target < {TARGET_REPLY_S:.0f} s: {met[probe.reply_s < TARGET_REPLY_S]}"
        f"  ({big.entries:,} entries: {big.reply_s:.2f} s)"
    )
    factor, slack = BOUNDED
    for name in names:
        g_small, g_big = small.growth(name), max(j.growth(name) for j in bigs)
        bounded = g_big <= factor * g_small + slack
        print(
            f"memory, {name}: +{g_small:,.0f} MiB for {small.entries:,} entries, +{g_big:,.0f} MiB for "
            f"{big.entries:,} ({big.entries / small.entries:.0f}x the entries)  -> bounded "
            f"(<= {factor}x + {slack:.0f} MiB): {met[bounded]}"
        )
    print(
        f"1-minute load average over the run: {min(r.loads):.1f} to {max(r.loads):.1f} on {os.cpu_count()} cores "
        "(other work on the machine; absolute figures are noisy, compare within the run)"
    )
    ok = all(j.status == "COMPLETED" and j.counts == {"SUCCESS": j.entries} for j in r.jobs)
    if not ok:
        print("NOT every entry is SUCCESS: see the errors printed above")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the big job (max 100,000)")
    args = parser.parse_args()
    if not SMALL <= args.entries <= 100_000:
        parser.error(f"--entries must be between {SMALL:,} and 100,000 (the API's limit per job)")
    ok = True
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        try:
            ok = show(bench(backend, args.entries)) and ok
        except Exception as e:  # report and go on with the next backend
            print(f"\n[{backend}] FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
