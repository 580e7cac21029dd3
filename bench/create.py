"""Benchmark of the Create Process API: HTTP throughput, a bare endpoint, direct inserts, fixed-rate latency.

    .venv/bin/python bench/create.py [--duration SECONDS] [--database-url URL]

Default: a fresh SQLite file in a temporary folder. With a PostgreSQL URL, the database named in it is
ignored: the script connects to ``test`` on that server, creates a database of its own and drops it at
the end. Everything runs on 127.0.0.1; every phase is bounded in time; servers are stopped even on error.
Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from common import PG_SERVER, fresh_database, serving

from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.services.teams import create_key
from procession.services.templates import seed_demo
from procession.store import tables as t
from procession.store.db import make_engine
from procession.store.repositories.schemas import Procedures

HERE = Path(__file__).parent
PATH = "/v1/ext/procedure/lead/process"
TED = {  # the specification's example; no lead_id, so each create gets a generated one
    "data": {"firstname": "Ted", "lastname": "Mosby", "score": 5},
    "record": {"data": {"phone_number": "7701214822", "email": "ted.mosby@yahoo.com"}},
    "status": "COMPLETED",
    "state": "CONVERTED",
    "nextActionAt": 1618558867539,
    "assignedTo": "bcc42c4f-3e9c-4eaa-8728-c1edd7c7be5c",
}
BODY = json.dumps(TED)
THREADS, CONNECTIONS, RATE = 2, 32, 300
IDLE_S = 4.0  # reuse a keep-alive connection idle less than this (the server closes it after 5 s)
TARGET_CREATES, TARGET_P99_MS = 1500, 25.0

# POSTs the body; done() prints one RESULT line (µs) and the first non-2xx reply, if any.
WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local threads = {}
function setup(thread) table.insert(threads, thread) end
non2xx, first_error = 0, nil
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == nil then first_error = status .. " " .. body end
  end
end
function done(summary, latency, requests)
  local e, bad, err = summary.errors, 0, nil
  for _, th in ipairs(threads) do
    bad = bad + th:get("non2xx")
    err = err or th:get("first_error")
  end
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), bad, e.connect + e.read + e.write + e.timeout))
  if err then io.write("ERROR " .. err .. "\\n") end
end
"""


@dataclass
class Result:
    rate: float
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int | None = None
    samples: list[str] = field(default_factory=list)  # the first error replies


def prepare(settings: Settings) -> tuple[str, str]:
    """Migrate, seed the demo team and make an admin key, as ``procession serve --demo`` does: (team, key)."""
    svc = bootstrap(settings)
    try:
        team_id = svc.run(seed_demo)
        return team_id, svc.run(create_key, team_id, role="admin", username="admin", label="bench")
    finally:
        svc.close()


def smoke(url: str, key: str) -> None:
    """One create, checked, before any load: a broken setup fails here with the server's answer."""
    r = httpx.post(
        url + PATH,
        content=BODY,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=10,
    )
    if r.status_code != 201:
        raise RuntimeError(f"a single create failed: {r.status_code} {r.text}")


def wrk(url: str, key: str, seconds: int, tmp: Path) -> Result:
    """Closed-loop load: wrk with THREADS threads and CONNECTIONS connections."""
    script = tmp / "create.lua"
    script.write_text(WRK_LUA % {"body": BODY, "key": key})
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    out = subprocess.run([*cmd, url + PATH], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    lines = out.stdout.splitlines()
    result = next(line for line in lines if line.startswith("RESULT ")).split()
    requests, duration_us, p50, p99, bad, socket_errors = map(int, result[1:])
    samples = [line.removeprefix("ERROR ")[:500] for line in lines if line.startswith("ERROR ")]
    if socket_errors:
        samples.append(f"{socket_errors} socket errors (connect/read/write/timeout)")
    return Result(requests / duration_us * 1e6, "req/s", p50 / 1e3, p99 / 1e3, bad + socket_errors, samples)


def direct_inserts(url: str, team_id: str, seconds: float) -> Result:
    """The API's writes without it: the next number (the counter row on SQLite, the sequence on PostgreSQL,
    as the API takes it), a process row and its events, one transaction each."""
    engine = make_engine(url)
    p, e, c = t.processes.c, t.events.c, t.counters.c
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")  # as the unit of work's writers
            with conn.begin():  # a row the API wrote is the template, so the values match
                row = dict(
                    conn.execute(sa.select(t.processes).where(p.team_id == team_id).limit(1)).one()._mapping
                )
                events = [
                    {k: v for k, v in ev._mapping.items() if k != "id"}
                    for ev in conn.execute(sa.select(t.events).where(e.process_id == row["id"]))
                ]
                attribute_id = conn.execute(
                    sa.select(c.attribute_id).where(c.procedure_id == row["procedure_id"])
                ).scalar_one()
            counters = Procedures(conn, team_id)
            rows, start = 0, time.perf_counter()
            while (now := time.perf_counter()) - start < seconds:
                with conn.begin():
                    lead_id = f"LEAD-{counters.next_number(row['procedure_id'], attribute_id)}"
                    new_id, ms = str(uuid.uuid4()), int(time.time() * 1000)
                    data = {**row["data"], attribute_id: lead_id}
                    conn.execute(
                        t.processes.insert(),
                        {
                            **row,
                            "id": new_id,
                            "pk_value": lead_id,
                            "data": data,
                            "created_at": ms,
                            "updated_at": ms,
                        },
                    )
                    conn.execute(
                        t.events.insert(), [{**ev, "process_id": new_id, "created_at": ms} for ev in events]
                    )
                rows += 1
        return Result(rows / (now - start), "rows/s")
    finally:
        engine.dispose()


class Client:
    """Keep-alive HTTP/1.1 POSTs of one request over raw asyncio streams (httpx's own cost would blur p99)."""

    def __init__(self, url: str, key: str, limit: int) -> None:
        self.host, self.port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        head = f"POST {PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        self.request, self.slots = (head + BODY).encode(), asyncio.Semaphore(limit)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []  # + idle since

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server still keeps (uvicorn closes one idle for 5 s), else a new one."""
        while self.idle:
            reader, writer, since = self.idle.pop()
            if not reader.at_eof() and time.monotonic() - since < IDLE_S:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def post(self) -> tuple[int, bytes]:
        """The status and body of one create."""
        async with self.slots:
            reader, writer = await self._connection()
            try:
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length[1]) if length else 0)
            except BaseException:
                writer.close()
                raise
            self.idle.append((reader, writer, time.monotonic()))
            return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


async def open_loop(url: str, key: str, rate: int, seconds: float) -> Result:
    """Sends at fixed times (``rate`` per second), latency measured from each scheduled time."""
    latencies: list[float] = []
    errors: list[str] = []
    client = Client(url, key, limit=64)

    async def send(at: float) -> None:
        try:
            status, body = await asyncio.wait_for(client.post(), 10)
            if not 200 <= status < 300:
                errors.append(f"{status} {body[:500].decode(errors='replace')}")
        except TimeoutError:
            errors.append("no answer within 10 s")
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - at)

    start, tasks = time.perf_counter() + 0.1, []
    for i in range(int(rate * seconds)):
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.create_task(send(at)))
    await asyncio.wait(tasks, timeout=15)  # each send gives up after 10 s, so all are done by then
    elapsed = time.perf_counter() - start
    client.close()
    done = sorted(latencies) or [float("nan")]
    p50, p99 = (done[int(q * (len(done) - 1))] * 1e3 for q in (0.5, 0.99))
    samples = [f"{n} x {error}" for error, n in Counter(errors).most_common(3)]
    return Result((len(latencies) - len(errors)) / elapsed, "req/s", p50, p99, len(errors), samples)


def table(rows: list[tuple[str, Result]]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    print(f"\n{'measure':<52}{'rate':>16}{'p50':>11}{'p99':>11}{'errors':>8}")
    for label, r in rows:
        errors = "-" if r.errors is None else str(r.errors)
        print(f"{label:<52}{r.rate:>10,.0f} {r.unit:<5}{ms(r.p50_ms):>11}{ms(r.p99_ms):>11}{errors:>8}")
        for sample in r.samples:
            print(f"    error: {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP load (default 10)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temp dir")
    args = parser.parse_args()
    seconds = args.duration
    with (
        tempfile.TemporaryDirectory(prefix="procession-bench-") as tmp_name,
        fresh_database(
            "postgresql" if (args.database_url or "").startswith("postgresql") else "sqlite",
            Path(tmp_name),
            pg_server=args.database_url or PG_SERVER,
        ) as url,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=url)
        team_id, key = prepare(settings)
        env = {**os.environ, "PROCESSION_DATA_DIR": str(settings.data_dir), "PROCESSION_DATABASE_URL": url}
        backend = sa.make_url(url).get_backend_name()
        print(f"backend: {backend}; {THREADS} wrk threads, {CONNECTIONS} connections, {seconds:g} s per load")

        serve = [sys.executable, "-m", "procession.cli", "serve"]
        with serving(serve, env, tmp / "server.log") as (server, _):
            smoke(server, key)
            api = wrk(server, key, seconds, tmp)
            time.sleep(1)  # let the requests wrk left in flight finish
            fixed = asyncio.run(open_loop(server, key, RATE, seconds))
        with serving([sys.executable, str(HERE / "bare.py")], env, tmp / "bare.log") as (bare_url, _):
            bare = wrk(bare_url, key, seconds, tmp)
        direct = direct_inserts(url, team_id, min(seconds, 5.0))

    table(
        [
            (f"1. API create over HTTP (wrk {THREADS}t/{CONNECTIONS}c)", api),
            ("2. bare FastAPI endpoint, same body model (same wrk)", bare),
            ("3. direct inserts, SQLAlchemy Core, 1 tx per row", direct),
            (f"4. API create, open loop at {RATE} req/s (2xx/s)", fixed),
        ]
    )
    print(f"\nAPI creates/s / bare endpoint req/s: {api.rate / bare.rate:.2f}")
    print(f"API creates/s / direct DB rows/s:    {api.rate / direct.rate:.2f}")
    met = {True: "met", False: "NOT met"}
    fast, prompt = api.rate >= TARGET_CREATES, (fixed.p99_ms or 1e9) < TARGET_P99_MS
    print(f"target >= {TARGET_CREATES:,} creates/s on SQLite: {met[fast]} ({api.rate:,.0f} on {backend})")
    print(f"target p99 < {TARGET_P99_MS:g} ms at {RATE} req/s: {met[prompt]} ({fixed.p99_ms:.1f} ms)")
    return 1 if api.errors or bare.errors or fixed.errors else 0


if __name__ == "__main__":
    sys.exit(main())
