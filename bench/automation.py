"""Benchmark of automation runs: a bulk job's saves trigger one HTTP call each, against the same calls made
directly.

    .venv/bin/python bench/automation.py [--backend sqlite|postgresql|both] [--calls 10000] [--rounds 2]

Per backend, in one run: a fresh database (a SQLite file in a temporary folder, or a PostgreSQL database
made for the run and dropped at the end) with the demo team and an admin key; the fake receiver
(``tests/fakes/receiver.py``, a real server on its own thread); ``procession serve`` (on PostgreSQL with its
embedded worker off and two ``procession worker`` processes); an automation on ``lead`` whose one ``http``
step POSTs ``{'id': process.id}`` to the receiver when a lead reaches CONVERTED. A warm-up of a few leads
goes through first (the first run's one-off costs). Then rounds (two by default), each: N new leads made by
a bulk create job (not measured); N POSTs of the same size made directly to the receiver by plain
``httpx.AsyncClient``s, 100 at once, in a process of their own (the limit, taken on the machine as it is
that minute); then ONE bulk update job moving the N leads to CONVERTED. A round is over once the receiver
has every run's Idempotency-Key and the API shows none of the round's runs pending or running: runs/s is N
over the time from sending the job to then. Latency: each run's first call arriving at the receiver,
matched by its key (``run-{id}-step-0``), minus the run's ``createdAt``. Then a HubSpot case: the ``http``
automation replaced by one ``hubspot.upsert`` step (a contact per lead) against the fake HubSpot
(``tests/fakes/hubspot.py``), N leads moved by one bulk update: its runs/s beside the ``http`` one. Where the time went: the round's
timeline from the runs' ``createdAt``, ``startedAt`` and ``finishedAt`` and the calls' arrivals, and the
CPU each process used. Memory of the server (SQLite) or of each worker (PostgreSQL), sampled every 50 ms:
VmRSS, and apart its process's own pages (RssAnon) and mapped files' (RssFile: on SQLite the database,
which grows every round). Exits 1 on an error: a lost, failed or duplicated run, a process without exactly
one SUCCEEDED run in its round, a key missing at the receiver or not a run's, a job that failed; figures
below their targets are printed, not errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from bulk import failures, max_worker_id, poll  # bench/bulk.py, next to this file
from common import free_port, fresh_database, process, tail, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.fakes
from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.services.teams import create_key
from procession.services.templates import seed_demo
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.receiver import Receiver

LEADS = "/v1/ext/procedure/lead/process"
HOOK, DIRECT = "/hook", "/direct"
WARM_UP = 20
JOB_DEADLINE_S, ROUND_DEADLINE_S, STALL_S = 600.0, 900.0, 120.0
TARGET_RATIO, TARGET_RUNS_S = 0.5, 1000.0  # runs/s over direct calls/s; runs/s on SQLite
FLAT = (1.10, 16.0)  # flat: after the last round <= 1.10 x after round 1 + 16 MiB
UNFINISHED = ("PENDING", "RUNNING", "WAITING")
FIELDS = ("VmRSS", "RssAnon", "RssFile")  # of /proc/PID/status, in MiB


def automation(receiver_url: str) -> dict[str, Any]:
    return {
        "name": "notify",
        "trigger": {"type": "state_reached", "state": "CONVERTED"},
        "steps": [
            {
                "name": "post",
                "type": "http",
                "method": "POST",
                "url": f"{receiver_url}{HOOK}",
                "body": "{'id': process.id}",
            }
        ],
        "retry": {"maxAttempts": 5, "backoffSeconds": 0.2},
    }


# memory ------------------------------------------------------------------------------------------------


def status_mib(pid: int) -> dict[str, float]:
    """``VmRSS``, ``RssAnon`` (the process's own pages) and ``RssFile`` (pages of files it maps: on SQLite,
    the database, mapped up to 1 GiB, so it grows with the file) of a process, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            found[name] = int(value.split()[0]) / 1024
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Memory:
    """The highest VmRSS, RssAnon and RssFile of each process (each on its own), sampled every 50 ms while
    in use."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> dict[str, dict[str, float]]:
        return {name: status_mib(pid) for name, pid in self.pids.items()}

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, mib in self.now().items():
                self.peak[name] = {k: max(v, self.peak[name][k]) for k, v in mib.items()}

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# the service -------------------------------------------------------------------------------------------


@contextmanager
def running(url: str, env: dict[str, str], logs: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """``procession serve`` (on PostgreSQL, two ``procession worker`` beside it), ready: (base URL, name ->
    pid, the processes that run the runs first)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "procession.cli"]
    with ExitStack() as stack:
        server = stack.enter_context(process([*cli, "serve", "--port", str(port)], env, logs / "server.log"))
        wait_until(
            lambda: httpx.get(f"{base}/healthz").status_code == 200, server, "serve", logs / "server.log"
        )
        if url.startswith("sqlite"):
            yield base, {"server": server.pid}
            return
        pids: dict[str, int] = {}
        for n in (1, 2):  # one after the other: each is up once it has registered
            before, log = max_worker_id(url), logs / f"worker{n}.log"
            worker = stack.enter_context(process([*cli, "worker"], env, log))
            wait_until(lambda: max_worker_id(url) > before, worker, f"worker {n}", log)  # noqa: B023
            pids[f"worker{n}"] = worker.pid
        yield base, pids | {"server": server.pid}


def prepare(settings: Settings) -> str:
    """Migrate, seed the demo team and make an admin key: the key."""
    svc = bootstrap(settings)
    try:
        team_id = svc.run(seed_demo)
        return str(svc.run(create_key, team_id, role="admin", username="admin", label="bench"))
    finally:
        svc.close()


def analyze(url: str) -> None:
    """On PostgreSQL, statistics as autovacuum keeps them, not those of tables that were empty."""
    if url.startswith("sqlite"):
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def submit(client: httpx.Client, method: str, path: str, items: list[dict[str, Any]]) -> str:
    """A bulk job of ``items``: its id."""
    body = orjson.dumps({"processes": items})
    r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    if r.status_code != 202:
        raise RuntimeError(f"bulk {method} of {len(items):,}: {r.status_code} {r.text[:1000]}")
    return str(r.json()["_data"]["id"])


def finished(client: httpx.Client, job_id: str, deadline: float) -> dict[str, Any]:
    """The job once it is finished; RuntimeError unless every entry is SUCCESS."""
    job = poll(client, job_id, deadline)
    counts = {k: v for k, v in job["counts"].items() if v}
    if job["status"] != "COMPLETED" or set(counts) != {"SUCCESS"}:
        raise RuntimeError(f"job {job_id}: {job['status']} {counts}: {failures(client, job_id)}")
    return job


def create_leads(client: httpx.Client, n: int, tag: str) -> list[str]:
    """``n`` new leads (NEW) by one bulk create job: their ids, in order."""
    items = [{"data": {"firstname": "Ted", "lastname": f"Mosby {tag}{i}", "city": "Osaka"}} for i in range(n)]
    job_id = submit(client, "POST", f"{LEADS}/bulk-create", items)
    finished(client, job_id, time.monotonic() + JOB_DEADLINE_S)
    ids: list[str] = []
    after = -1
    while True:
        r = client.get(f"/v1/ext/background-job/{job_id}/entries", params={"after": after, "limit": 1000})
        r.raise_for_status()
        ids += [e["processId"] for e in r.json()["_data"]]
        after = r.json()["_meta"]["nextAfter"]
        if after is None:
            break
    if len(ids) != n:
        raise RuntimeError(f"bulk create of {n:,}: {len(ids):,} process ids")
    return ids


def runs_since(client: httpx.Client, automation_id: str, since_ms: int) -> list[dict[str, Any]]:
    """Every run of the automation created at or after ``since_ms``, newest first (pages of 500)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"automation": automation_id, "since": since_ms, "limit": 500}
    while True:
        r = client.get("/v1/ext/runs", params=params)
        r.raise_for_status()
        out += r.json()["_data"]
        before = r.json()["_meta"].get("nextBefore")
        if before is None:
            return out
        params["before"] = before


def unfinished(client: httpx.Client, automation_id: str, since_ms: int) -> bool:
    for status in UNFINISHED:
        params: dict[str, Any] = {
            "automation": automation_id,
            "since": since_ms,
            "status": status,
            "limit": 1,
        }
        r = client.get("/v1/ext/runs", params=params)
        r.raise_for_status()
        if r.json()["_data"]:
            return True
    return False


# the direct limit --------------------------------------------------------------------------------------


def direct_calls(url: str, n: int, concurrency: int, body: bytes) -> float:
    """Seconds for ``n`` POSTs of ``body`` to ``url``, ``concurrency`` at once, each caller with an
    ``httpx.AsyncClient`` of its own: one client shared by 100 callers gets 120-230 calls/s on this machine,
    not the 1,100-1,300 of separate ones (its pool rescans every connection per request, encode/httpcore#1035;
    the server's outbound pool avoids that), so a shared one would be the pool's limit, not the calls'. Run in
    a process of its own, as the runs' calls are made in the server's, not beside the receiver."""

    async def main() -> float:
        todo = iter(range(n))
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

        async def caller() -> None:
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                for i in todo:
                    headers = {"Idempotency-Key": f"direct-{i}-step-0", "Content-Type": "application/json"}
                    r = await client.post(url, content=body, headers=headers)
                    r.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.monotonic() - started

    return asyncio.run(main())


def direct_rate(receiver: Receiver, n: int, concurrency: int, body: bytes) -> float:
    before = receiver.count(DIRECT)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        seconds = pool.submit(direct_calls, f"{receiver.url}{DIRECT}", n, concurrency, body).result()
    if receiver.count(DIRECT) - before != n:
        raise RuntimeError(f"direct calls: {receiver.count(DIRECT) - before:,} arrived of {n:,}")
    return n / seconds


# one round ---------------------------------------------------------------------------------------------


@dataclass
class Round:
    n: int
    direct: float  # direct calls/s, just before
    total_s: float  # the job sent -> no run of the round left unfinished, seen through the API
    last_finished_s: float  # the job sent -> the latest finishedAt
    latency_ms: list[float]  # per run: its first call's arrival - its createdAt
    timeline: dict[str, tuple[float, float]]  # phase -> first, last (s after the job was sent)
    waits: dict[str, list[float]]  # per run, ms: created -> started -> called -> finished
    holds: list[int]  # runs taken together (one startedAt)
    memory: dict[str, dict[str, tuple[float, float, float]]]  # process -> field -> start, peak, end (MiB)
    cpu: dict[str, float]  # process -> CPU seconds over the round (the job sent -> every run finished)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n / self.total_s


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wait_for_runs(
    client: httpx.Client, receiver: Receiver, automation_id: str, n: int, since_ms: int, sent: float
) -> float:
    """Until the receiver has ``n`` keys and the API shows no unfinished run of the round: seconds since
    ``sent`` (monotonic). RuntimeError on the deadline or STALL_S without a new arrival."""
    last, moved = -1, time.monotonic()
    while True:
        now = time.monotonic()
        if now - sent > ROUND_DEADLINE_S:
            raise RuntimeError(f"{last:,} of {n:,} runs called after {ROUND_DEADLINE_S:.0f} s")
        keys = len(receiver.keys(HOOK))
        if keys != last:
            last, moved = keys, now
        elif now - moved > STALL_S:
            raise RuntimeError(f"no new call for {STALL_S:.0f} s: {keys:,} of {n:,} runs called")
        if keys >= n and not unfinished(client, automation_id, since_ms):
            return time.monotonic() - sent
        time.sleep(0.05 if keys >= n else 0.2)


def check(runs: list[dict[str, Any]], lead_ids: list[str], receiver: Receiver) -> list[str]:
    """Every lead has exactly one run, SUCCEEDED, and the receiver has exactly the runs' keys."""
    errors = []
    statuses = Counter(r["status"] for r in runs)
    if statuses != {"SUCCEEDED": len(lead_ids)}:
        errors.append(f"runs by status {dict(statuses)}, expected SUCCEEDED {len(lead_ids):,}")
    per_process = Counter(r["processId"] for r in runs if r["status"] == "SUCCEEDED")
    missing = set(lead_ids) - set(per_process)
    twice = [pid for pid, k in per_process.items() if k > 1]
    stray = set(per_process) - set(lead_ids)
    for what, found in (
        ("without a SUCCEEDED run", missing),
        ("with more than one", twice),
        ("not of the round", stray),
    ):
        if found:
            errors.append(f"{len(found):,} processes {what}, e.g. {sorted(found)[:3]}")
    keys = receiver.keys(HOOK)
    mine = {f"run-{r['id']}-step-0" for r in runs}
    if set(keys) != mine:
        errors.append(
            f"receiver keys: {len(mine - set(keys)):,} runs never called, {len(set(keys) - mine):,} keys of no run"
        )
    return errors


def one_round(
    client: httpx.Client,
    receiver: Receiver,
    automation_id: str,
    pids: dict[str, int],
    everyone: dict[str, int],
    args: argparse.Namespace,
    url: str,
    tag: str,
    say: Callable[[str], None],
) -> Round:
    n = args.calls
    lead_ids = create_leads(client, n, tag)
    analyze(url)
    say(f"round {tag}: {n:,} leads created")
    direct = direct_rate(receiver, n, args.concurrency, orjson.dumps({"id": lead_ids[0]}))
    say(f"round {tag}: direct calls {direct:,.0f}/s (concurrency {args.concurrency})")
    receiver.reset()
    clock = time.time() - time.monotonic()  # the receiver's arrival times (monotonic) as epoch seconds
    with Memory(pids) as memory:
        start = memory.now()
        cpu = {name: cpu_s(pid) for name, pid in everyone.items()}
        sent_wall, sent = time.time(), time.monotonic()
        since_ms = int(sent_wall * 1000) - 1
        job_id = submit(client, "PATCH", LEADS, [{"id": pid, "state": "CONVERTED"} for pid in lead_ids])
        reply_s = time.monotonic() - sent
        total_s = wait_for_runs(client, receiver, automation_id, n, since_ms, sent)
        end = memory.now()
        cpu = {name: cpu_s(pid) - cpu[name] for name, pid in everyone.items()}
    job = finished(client, job_id, time.monotonic() + JOB_DEADLINE_S)
    runs = runs_since(client, automation_id, since_ms)
    errors = check(runs, lead_ids, receiver)
    arrivals: dict[str, float] = {}
    for call in receiver.received(HOOK):
        key = call.headers.get("idempotency-key", "")
        arrivals.setdefault(key, (call.at + clock) * 1000)
    repeated = sum(k - 1 for k in receiver.keys(HOOK).values())
    if repeated:
        say(f"round {tag}: {repeated:,} calls repeated with the same key (retried or taken over)")
    called = {r["id"]: arrivals[f"run-{r['id']}-step-0"] for r in runs if f"run-{r['id']}-step-0" in arrivals}
    ok = [r for r in runs if r["id"] in called and r["startedAt"] and r["finishedAt"]]

    def span(values: list[float]) -> tuple[float, float]:
        return (min(values) / 1000 - sent_wall, max(values) / 1000 - sent_wall) if values else (0.0, 0.0)

    timeline = {
        "202 reply": (reply_s, reply_s),
        "bulk job finishedAt": span([job["finishedAt"]]),
        "runs createdAt": span([r["createdAt"] for r in runs]),
        "runs startedAt": span([r["startedAt"] for r in ok]),
        "calls arrive": span(list(called.values())),
        "runs finishedAt": span([r["finishedAt"] for r in ok]),
        "all SUCCEEDED in API": (total_s, total_s),
    }
    waits = {
        "created -> started (queued, claimed, held)": [r["startedAt"] - r["createdAt"] for r in ok],
        "started -> call arrives (built, sent)": [called[r["id"]] - r["startedAt"] for r in ok],
        "call arrives -> finishedAt (reply judged)": [r["finishedAt"] - called[r["id"]] for r in ok],
    }
    return Round(
        n=n,
        direct=direct,
        total_s=total_s,
        last_finished_s=timeline["runs finishedAt"][1],
        latency_ms=[called[r["id"]] - r["createdAt"] for r in runs if r["id"] in called],
        timeline=timeline,
        waits=waits,
        holds=sorted(Counter(r["startedAt"] for r in ok).values()),
        memory={
            name: {k: (start[name][k], memory.peak[name][k], end[name][k]) for k in FIELDS} for name in pids
        },
        cpu=cpu,
        errors=errors,
    )


def warm_up(client: httpx.Client, receiver: Receiver, automation_id: str) -> None:
    """A few runs end to end: the first run's one-off costs (imports, the outbound loop) before measuring."""
    since_ms = int(time.time() * 1000) - 1
    ids = create_leads(client, WARM_UP, "warm-")
    finished(
        client,
        submit(client, "PATCH", LEADS, [{"id": i, "state": "CONVERTED"} for i in ids]),
        time.monotonic() + 60,
    )
    wait_for_runs(client, receiver, automation_id, WARM_UP, since_ms, time.monotonic())


def hubspot_case(
    client: httpx.Client, notify_id: str, n: int, say: Callable[[str], None]
) -> tuple[float, list[str]]:
    """The same bulk update, its runs each a ``hubspot.upsert`` of a new contact against the fake HubSpot
    (the ``http`` automation removed first): runs/s, and errors (a run not SUCCEEDED, a contact not made
    once)."""
    token = "pat-bench-token"
    with FakeHubSpot(token=token) as hubspot:
        connector = {
            "name": "crm",
            "kind": "hubspot",
            "baseUrl": hubspot.url,
            "credentials": {"token": token},
        }
        client.post("/v1/admin/connectors", json=connector).raise_for_status()
        client.delete(f"/v1/admin/procedures/lead/automations/{notify_id}").raise_for_status()
        step = {"name": "crm", "type": "hubspot.upsert", "connector": "crm", "object": "contacts",
                "properties": {"email": "process.id + '@example.com'", "lastname": "process.data.lastname"}}  # fmt: skip
        body = {"name": "to_crm", "trigger": {"type": "state_reached", "state": "CONVERTED"}, "steps": [step]}
        r = client.post("/v1/admin/procedures/lead/automations", json=body)
        r.raise_for_status()
        automation_id = r.json()["_data"]["id"]
        ids = create_leads(client, n, "hubspot-")
        since_ms, sent = int(time.time() * 1000) - 1, time.monotonic()
        submit(client, "PATCH", LEADS, [{"id": pid, "state": "CONVERTED"} for pid in ids])
        while hubspot.held("contacts") < n or unfinished(client, automation_id, since_ms):
            if time.monotonic() - sent > ROUND_DEADLINE_S:
                raise RuntimeError(f"hubspot: {hubspot.held('contacts'):,} of {n:,} contacts made")
            time.sleep(0.05)
        elapsed = time.monotonic() - sent
        runs = runs_since(client, automation_id, since_ms)
        errors = [f"hubspot: runs by status {dict(Counter(r['status'] for r in runs))}"] * (
            Counter(r["status"] for r in runs) != {"SUCCEEDED": n}
        )
        if hubspot.held("contacts") != n:
            errors.append(f"hubspot: {hubspot.held('contacts'):,} contacts for {n:,} leads")
        say(f"hubspot.upsert: {n / elapsed:,.0f} runs/s ({elapsed:.1f} s)")
        return n / elapsed, errors


# one backend -------------------------------------------------------------------------------------------


def bench(backend: str, args: argparse.Namespace) -> tuple[list[Round], list[float], tuple[float, list[str]]]:
    loads: list[float] = []

    def say(message: str) -> None:
        loads.append(os.getloadavg()[0])
        print(f"[{backend}] {message}  (load {loads[-1]:.1f})", flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="procession-automation-") as tmp_name,
        fresh_database(backend, Path(tmp_name)) as url,
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
        }
        if backend == "postgresql":
            env["PROCESSION_EMBEDDED_WORKER"] = "false"
        with (
            running(url, env, tmp) as (base, started),
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client,
        ):
            try:
                r = client.post("/v1/admin/procedures/lead/automations", json=automation(receiver.url))
                if r.status_code != 201:
                    raise RuntimeError(f"create automation: {r.status_code} {r.text[:1000]}")
                automation_id = r.json()["_data"]["id"]
                warm_up(client, receiver, automation_id)
                say(
                    f"up: {', '.join(f'{k} pid {v}' for k, v in started.items())}; automation {automation_id}; warmed up"
                )
                pids = {k: v for k, v in started.items() if k != "server" or backend == "sqlite"}  # runners
                everyone = started | {"bench (receiver)": os.getpid()}
                rounds = []
                for n in range(1, args.rounds + 1):
                    rounds.append(
                        one_round(client, receiver, automation_id, pids, everyone, args, url, f"r{n}-", say)
                    )
                    say(f"round {n}: {rounds[-1].rate:,.0f} runs/s ({rounds[-1].total_s:.1f} s)")
                    for error in rounds[-1].errors:
                        print(f"    ERROR: {error}")
                return rounds, loads, hubspot_case(client, automation_id, args.calls, say)
            except Exception:
                for log in sorted(tmp.glob("*.log")):
                    print(f"--- {log.name} (tail) ---\n{tail(log)}", file=sys.stderr)
                raise


# the table ---------------------------------------------------------------------------------------------


def show(backend: str, rounds: list[Round], loads: list[float], hubspot: tuple[float, list[str]]) -> bool:
    met = {True: "met", False: "NOT met"}
    n = rounds[0].n
    print(
        f"\n== {backend}: one http step per lead reaching CONVERTED, {n:,} leads by one bulk update per round =="
    )
    for i, r in enumerate(rounds, 1):
        print(
            f"round {i}: {r.rate:,.0f} runs/s ({r.total_s:.1f} s to every run SUCCEEDED in the API; latest finishedAt"
            f" {r.last_finished_s:.1f} s); direct {r.direct:,.0f} calls/s; latency p50 {pct(r.latency_ms, 0.5):,.0f} ms"
            f", p99 {pct(r.latency_ms, 0.99):,.0f} ms"
        )
        for phase, (first, last) in r.timeline.items():
            print(f"    {phase:<34} {first:>7.2f} s .. {last:>7.2f} s after the job was sent")
        for what, values in r.waits.items():
            print(
                f"    {what:<44} p50 {pct(values, 0.5):>8,.0f} ms  p99 {pct(values, 0.99):>8,.0f} ms"
                f"  max {max(values, default=0):>8,.0f} ms"
            )
        sizes = r.holds
        print(
            f"    runs taken together (one startedAt): {len(sizes)} holds, sizes median "
            f"{statistics.median(sizes) if sizes else 0:.0f}, min {min(sizes, default=0)}, max {max(sizes, default=0)}"
        )
        cpu = ", ".join(f"{k} {v:.1f} s ({v / r.total_s:.2f} core)" for k, v in r.cpu.items())
        print(f"    CPU over the round: {cpu}")
        for name, fields in r.memory.items():
            shown = "; ".join(f"{k} {a:,.0f} / {b:,.0f} / {c:,.0f}" for k, (a, b, c) in fields.items())
            print(f"    memory {name}, MiB at the start / peak / at the end: {shown}")

    print("\nsummary (figure, limit, ratio):")
    best = max(rounds, key=lambda r: r.rate)
    ratios = [r.rate / r.direct for r in rounds]
    ratio = statistics.median(ratios)
    print(
        f"runs/s vs direct calls/s (each round against the direct run just before it: "
        f"{', '.join(f'{x:.2f}' for x in ratios)}): best {best.rate:,.0f} / {best.direct:,.0f}; "
        f"median ratio {ratio:.2f}  -> target >= {TARGET_RATIO:.2f}: {met[ratio >= TARGET_RATIO]}"
    )
    rates = ", ".join(f"{r.rate:,.0f}" for r in rounds)
    target = f"target >= {TARGET_RUNS_S:,.0f}/s" + (
        "" if backend == "sqlite" else " (set for SQLite; for reference)"
    )
    print(
        f"runs/s ({rates}) vs {TARGET_RUNS_S:,.0f}/s: ratio {best.rate / TARGET_RUNS_S:.2f}  -> {target}: {met[best.rate >= TARGET_RUNS_S]}"
    )
    for i, r in enumerate(rounds, 1):
        print(
            f"event-to-first-call latency, round {i}: p50 {pct(r.latency_ms, 0.5):,.0f} ms, p99 "
            f"{pct(r.latency_ms, 0.99):,.0f} ms (no limit set; the round lasted {r.total_s * 1000:,.0f} ms)"
        )
    factor, slack = FLAT
    for name in rounds[0].memory:
        for k in ("VmRSS", "RssAnon"):  # VmRSS has RssFile in it: on SQLite, the mapped database grows
            after1, after_n = rounds[0].memory[name][k][2], rounds[-1].memory[name][k][2]
            peak = max(r.memory[name][k][1] for r in rounds)
            flat = after_n <= factor * after1 + slack
            print(
                f"memory, {name}, {k}: at the start {rounds[0].memory[name][k][0]:,.0f} MiB, peak {peak:,.0f}, "
                f"after round 1 {after1:,.0f}, after round {len(rounds)} {after_n:,.0f}: ratio "
                f"{after_n / after1:.2f}  -> flat (<= {factor}x + {slack:.0f} MiB): {met[flat]}"
            )
        files = [f"{r.memory[name]['RssFile'][2]:,.0f}" for r in rounds]
        print(
            f"  ({name}'s RssFile after each round: {', '.join(files)} MiB: mapped files, not its own memory)"
        )
    print(
        f"1-minute load average over the run: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores "
        "(other work on the machine; compare within the run)"
    )
    best_http = max(r.rate for r in rounds)
    print(
        f"hubspot.upsert (one new contact per run, against the fake HubSpot): {hubspot[0]:,.0f} runs/s "
        f"beside http {best_http:,.0f} runs/s: ratio {hubspot[0] / best_http:.2f}"
    )
    for error in hubspot[1]:
        print(f"    ERROR: {error}")
    ok = not any(r.errors for r in rounds) and not hubspot[1]
    if not ok:
        print("ERRORS: lost, failed or duplicated runs: see above")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--calls", type=int, default=10_000, help="leads moved per round (one run each)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of N runs on one service (2 or more)")
    parser.add_argument("--concurrency", type=int, default=100, help="the direct client's calls at once")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be 2 or more: memory after the first round is compared with the last")
    ok = True
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        try:
            ok = show(backend, *bench(backend, args)) and ok
        except Exception as e:  # report and go on with the next backend
            print(f"\n[{backend}] FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
