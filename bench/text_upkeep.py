"""What text search's upkeep costs the bulk write path: the batched process update of bulk chunks
(``store.batch.update_processes``: 3 attributes merged, one of them text, as ``bulk.py``'s entries do), with
the words kept (SQLite: the FTS5 update trigger; PostgreSQL: the GIN index on the words) and without, in
alternate rounds on the same rows, so that both see the machine as it was that minute.

    .venv/bin/python bench/text_upkeep.py [--backend sqlite|postgresql|both] [--leads 10000] [--rounds 6]

Prints the median µs per entry of each and their ratio (the rule: the upkeep costs the bulk path no more
than 5%; the whole path, HTTP and events included, costs several times the process update alone, which is
what this measures).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from common import fresh_database

from procession.bootstrap import bootstrap
from procession.config import Settings
from procession.services.commands import CreateProcess
from procession.services.common import Caller
from procession.services.processes import create_in
from procession.services.templates import seed_demo
from procession.store.batch import run, update_processes

BATCH = 1000
CITIES = ("Osaka", "Mumbai", "Lyon", "Porto", "Austin")
SOURCES = ("web-form", "referral", "event")


def upkeep(conn: sa.Connection) -> tuple[list[str], list[str]]:
    """The statements that stop keeping the words of updated processes, and those that start again."""
    if conn.dialect.name == "postgresql":
        (index,) = conn.exec_driver_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_processes_words'"
        ).one()
        return ["DROP INDEX ix_processes_words"], [index]
    (trigger,) = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'process_words_update'"
    ).one()
    return ["DROP TRIGGER process_words_update"], [trigger]


def bench(backend: str, args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="procession-upkeep-") as tmp,
        fresh_database(backend, Path(tmp)) as url,
    ):
        svc = bootstrap(Settings(data_dir=Path(tmp) / "data", database_url=url))
        try:
            team_id = svc.run(seed_demo)
            with svc.uows.read(team_id) as uow:
                procedure = uow.procedures.get("lead")
                admin = Caller(team_id, "admin", uow.users.id_of("admin"))
            assert procedure is not None
            ids: list[str] = []
            for start in range(0, args.leads, BATCH):
                with svc.uows.write(team_id) as uow:
                    for i in range(start, min(start + BATCH, args.leads)):
                        cmd = CreateProcess(
                            data={"firstname": "Ted", "lastname": f"Mosby {i}", "city": "Osaka"}
                        )
                        ids.append(create_in(uow, admin, "lead", cmd)["id"])
                    uow.commit()
            attr = {a.short_id: a.id for a in procedure.attributes}
            changes = [f"data.{attr[k]}" for k in ("score", "city", "source")]
            with svc.engine.connect() as conn:
                stop, start_again = upkeep(conn)
                if backend == "postgresql":
                    conn.exec_driver_sql("ANALYZE")
                conn.commit()
            times: dict[bool, list[float]] = {True: [], False: []}
            turn = 0
            for r in range(args.rounds):
                for kept in (True, False) if r % 2 else (False, True):
                    with svc.engine.connect() as conn:
                        for statement in () if kept else stop:
                            conn.exec_driver_sql(statement)
                        conn.commit()
                    elapsed = 0.0
                    for b in range(0, len(ids), BATCH):
                        turn += 1
                        with svc.uows.write(team_id) as uow:
                            processes = list(uow.processes.get_all(ids[b : b + BATCH]).values())
                            for i, p in enumerate(processes):
                                p.data = p.data | {
                                    attr["score"]: turn + i,
                                    attr["city"]: f"{CITIES[(turn + i) % 5]} {turn}",
                                    attr["source"]: SOURCES[(turn + i) % 3],
                                }
                                p.updated_at += 1
                                p.version += 1
                            writes = update_processes(uow.conn, procedure, processes, changes)
                            began = time.perf_counter()
                            run(uow.conn, writes)
                            uow.commit()
                            elapsed += time.perf_counter() - began
                    times[kept].append(elapsed / len(ids) * 1e6)
                    with svc.engine.connect() as conn:
                        for statement in () if kept else start_again:
                            conn.exec_driver_sql(statement)
                        conn.commit()
            with_, without = statistics.median(times[True]), statistics.median(times[False])
            print(
                f"{backend}: process update of {args.leads:,} leads in batches of {BATCH:,}, {args.rounds} rounds "
                f"each: {with_:.1f} µs/entry with the words kept, {without:.1f} without "
                f"(runs: {', '.join(f'{x:.1f}' for x in times[True])} / {', '.join(f'{x:.1f}' for x in times[False])}); "
                f"upkeep {with_ - without:+.1f} µs/entry, ratio {with_ / without:.2f}"
            )
        finally:
            svc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        bench(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
