"""Benchmark of export: a million processes streamed through HTTP as CSV and as NDJSON, and the server's memory.

    .venv/bin/python bench/export.py [--backend sqlite|postgresql|both] [--processes 1000000]

Per backend: a fresh database holding the demo team and N leads (``search_data.py``, as ``search.py`` has
them); the real server runs as a subprocess, and one client exports every lead (no filter, the default order)
as CSV, then as NDJSON, reading the stream as it comes. Prints, per format, the rows, the bytes, the rows per
second and their ratio to the target (50,000 rows/s), the server's CPU time per row (all its threads), and its
resident memory before the exports and at its peak during each (sampled every 50 ms, and the kernel's
high-water mark): flat memory is a peak a few batches above the start, whatever N. Every run is bounded in
time; the server is stopped even on error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from common import fresh_database, serving
from search_data import build, prepare  # bench/search_data.py, next to this file

from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.store import tables as t

PATH = "/v1/ext/procedure/lead/process/export"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_ROWS_PER_S = 50_000


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now), ``RssAnon`` (of it, the heap's: not the database file SQLite maps) or ``VmHWM``
    (the peak of VmRSS) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Peak:
    """The highest resident memory of ``pid`` while in the ``with`` block, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.kib, self.anon_kib, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.kib = max(self.kib, memory_kib(self.pid, "VmRSS"))
            self.anon_kib = max(self.anon_kib, memory_kib(self.pid, "RssAnon"))
            self._stop.wait(0.05)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def export(client: httpx.Client, fmt: str, timeout: float) -> tuple[int, int, float]:
    """(rows, bytes, seconds) of one export of every lead, read as it streams."""
    lines = size = 0
    start = time.perf_counter()
    with client.stream("POST", PATH, json={"format": fmt}, timeout=timeout) as r:
        if r.status_code != 200:
            raise RuntimeError(f"export answered {r.status_code}: {r.read()[:500]!r}")
        for chunk in r.iter_raw(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.perf_counter() - start
    return lines - (1 if fmt == "csv" else 0), size, seconds  # CSV: the header line is not a row


def bench(backend: str, args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="procession-export-") as tmp_name,
        fresh_database(backend, Path(tmp_name), pg_server=args.pg_url) as url,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=url)
        svc = bootstrap(settings)
        try:
            demo = prepare(svc)
            _, built = build(svc, demo, args.processes)
            c = t.processes.c  # and the demo's own leads
            with svc.engine.connect() as conn:
                found = sa.select(sa.func.count()).where(c.procedure_id == demo.procedure_id, ~c.is_deleted)
                expected = int(conn.scalar(found) or 0)
        finally:
            svc.close()
        print(f"\n=== {backend}: {built}", flush=True)
        env = {
            **os.environ,
            "PROCESSION_DATABASE_URL": url,
            "PROCESSION_DATA_DIR": str(settings.data_dir),
            "PROCESSION_EMBEDDED_WORKER": "false",
        }
        headers = {"Authorization": f"Bearer {demo.key}"}
        with (
            serving([sys.executable, "-m", "procession.cli", "serve"], env, tmp / "server.log") as (
                server,
                proc,
            ),
            httpx.Client(base_url=server, headers=headers) as client,
        ):
            client.post(PATH.replace("export", "list"), json={"limit": 100}).raise_for_status()  # warm
            start_kib, anon_kib = memory_kib(proc.pid, "VmRSS"), memory_kib(proc.pid, "RssAnon")
            print(
                f"server resident memory before the exports: {start_kib / 1024:.0f} MiB "
                f"(anonymous {anon_kib / 1024:.0f} MiB); load average {os.getloadavg()[0]:.1f}"
            )
            head = (
                f"{'format':<8}{'rows':>11}{'MiB':>8}{'seconds':>9}{'rows/s':>10}{'ratio':>8}{'CPU µs/row':>11}"
                f"{'peak RSS':>10}"
            )
            print(f"{head}{'growth':>8}{'peak anon':>11}{'growth':>8}  >= {TARGET_ROWS_PER_S:,} rows/s (MiB)")
            for fmt in ("csv", "ndjson"):
                cpu = cpu_seconds(proc.pid)
                with Peak(proc.pid) as peak:
                    rows, size, seconds = export(client, fmt, args.timeout)
                cpu = cpu_seconds(proc.pid) - cpu
                if rows != expected:
                    raise RuntimeError(f"{fmt}: {rows:,} rows exported, {expected:,} expected")
                rate = rows / seconds
                verdict = "yes" if rate >= TARGET_ROWS_PER_S else "NO"
                print(
                    f"{fmt:<8}{rows:>11,}{size / 2**20:>8.0f}{seconds:>9.1f}{rate:>10,.0f}"
                    f"{rate / TARGET_ROWS_PER_S:>7.2f}x{cpu / rows * 1e6:>11.1f}"
                    f"{peak.kib / 1024:>10.0f}{(peak.kib - start_kib) / 1024:>8.0f}"
                    f"{peak.anon_kib / 1024:>11.0f}{(peak.anon_kib - anon_kib) / 1024:>8.0f}  {verdict}",
                    flush=True,
                )
            print(
                f"server's high-water mark (VmHWM) over its life: {memory_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--processes", type=int, default=1_000_000, help="lead processes to write")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per export at most")
    parser.add_argument("--pg-url", default=PG_URL, help="a PostgreSQL server (its database is ignored)")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # unwind, so the server stops and the database goes
        signal.signal(signum, lambda signum, _frame: sys.exit(128 + signum))
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
