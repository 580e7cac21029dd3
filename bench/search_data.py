"""The data of ``search.py``: the demo team, N lead processes written straight into ``processes``, and the
customer records they are for (one per ``PER_CUSTOMER`` leads) written into ``records``.

Rows are built as ``create_process`` would build them (ids from the ``lead`` procedure, a uuid4 each, one
after the other over the past year) and one is checked against a row the service itself wrote. The secondary
indexes are dropped for the load and rebuilt from ``tables.py``; then ANALYZE (VACUUM ANALYZE on PostgreSQL).
"""

from __future__ import annotations

import gc
import itertools
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, DropIndex

from procession.bootstrap import Services
from procession.services.commands import CreateProcess
from procession.services.common import Caller
from procession.services.processes import create_process
from procession.services.teams import create_key
from procession.services.templates import seed_demo
from procession.store import tables as t
from procession.store.words import TABLES, settle

COLUMNS = [c.name for c in t.processes.columns]
RECORD_COLUMNS = [c.name for c in t.records.columns]
PER_CUSTOMER = 4  # leads per customer record

# fmt: off
CITIES = ["Mumbai", "Pune", "Delhi", "Chennai", "Kolkata", "Bengaluru", "Hyderabad", "Jaipur", "Lucknow",
    "Surat", "Kanpur", "Nagpur", "Indore", "Bhopal", "Patna", "Vadodara", "Ludhiana", "Agra", "Nashik",
    "Ranchi", "Meerut", "Rajkot", "Varanasi", "Amritsar", "Allahabad", "Jodhpur", "Raipur", "Kota",
    "Guwahati", "Mysore", "Gwalior", "Madurai", "Kochi", "Dehradun", "Jammu", "Mangalore", "Udaipur",
    "Osaka", "Tokyo", "Kyoto", "Lisbon", "Porto", "Madrid", "Paris", "Lyon", "Berlin", "Munich", "Vienna",
    "Prague", "Warsaw"]
FIRST = ["Ted", "Marshall", "Lily", "Robin", "Barney", "Tracy", "Ranjit", "Carl", "Wendy", "Sandy",
    "Patrice", "Quinn", "Zoey", "Victoria", "Kevin"]
LAST = ["Mosby", "Eriksen", "Aldrin", "Scherbatsky", "Stinson", "McConnell", "Singh", "Wharmby", "Rivers",
    "Pirillo", "Liu", "Dravid"]
SOURCES = ["web-form", "referral", "walk-in"]
DOMAINS = ["example.com", "mail.example", "inbox.example"]
# fmt: on
YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True)
class Demo:
    """The demo team as the benchmark needs it: ids to write rows with, and a key to read them."""

    team_id: str
    key: str
    admin_id: str
    users: list[str]  # ids of the demo users, the assignees
    procedure_id: str
    attr: dict[str, str]  # lead attribute shortId -> id
    states: dict[str, str]  # lead state shortId -> id
    entity_id: str  # the customer entity's, whose records the leads are for
    customer: dict[str, str]  # customer attribute shortId -> id


def phone(number: int) -> str:
    """The phone number (primary key) of customer ``number``."""
    return f"9{number:09d}"


def email(number: int) -> str:
    return f"customer{number}@{DOMAINS[number % len(DOMAINS)]}"


def prepare(svc: Services) -> Demo:
    """Seed the demo team and make an admin key, as ``procession serve --demo`` does."""
    team_id = svc.run(seed_demo)
    key = svc.run(create_key, team_id, role="admin", username="admin", label="search bench")
    with svc.uows.read(team_id) as uow:
        lead = uow.procedures.get("lead")
        customer = uow.entities.get("customer")
        users = uow.users.list()
    assert lead is not None and customer is not None
    return Demo(
        team_id=team_id,
        key=key,
        admin_id=next(u["id"] for u in users if u["username"] == "admin"),
        users=[u["id"] for u in users],
        procedure_id=lead.id,
        attr={a.short_id: a.id for a in lead.attributes},
        states={s.short_id: s.id for s in lead.states},
        entity_id=customer.id,
        customer={a.short_id: a.id for a in customer.attributes},
    )


def random_lead(rng: random.Random, demo: Demo) -> dict[str, Any]:
    """A Create Process body (shortIds), as a client would send it."""
    return {
        "data": {
            "firstname": rng.choice(FIRST),
            "lastname": rng.choice(LAST),
            "score": rng.randint(0, 100),
            "city": rng.choice(CITIES),
            "source": rng.choice(SOURCES),
        },
        "state": rng.choice(list(demo.states)),
        "status": rng.choice(["OPEN", "COMPLETED", "CANCELLED"]),
        "assignedTo": rng.choice(demo.users),
    }


def lead_row(demo: Demo, body: dict[str, Any], *, id: str, number: int, at: int) -> dict[str, Any]:
    """The ``processes`` row ``create_process`` writes for ``body`` (columns in table order)."""
    lead_id, status, data = f"LEAD-{number}", body["status"], body["data"]
    return {
        "id": id,
        "team_id": demo.team_id,
        "procedure_id": demo.procedure_id,
        "pk_value": lead_id,
        "status": status,
        "state_id": demo.states[body["state"]],
        "data": {**{demo.attr[k]: v for k, v in data.items()}, demo.attr["lead_id"]: lead_id},
        "derived_data": {demo.attr["full_name"]: f"{data['firstname']} {data['lastname']}"},
        "created_by": demo.admin_id,
        "assigned_to": body["assignedTo"],
        "belongs_to": None,
        "entity_id": None,
        "record_id": None,
        "next_action_at": None,
        "completed_at": at if status == "COMPLETED" else None,
        "cancelled_at": at if status == "CANCELLED" else None,
        "primary_booking": None,
        "parent_procedure_id": None,
        "parent_process_id": None,
        "first_assigned_to": body["assignedTo"],
        "first_assigned_at": at,
        "last_assigned_at": at,
        "created_at": at,
        "updated_at": at,
        "is_deleted": False,
        "version": 1,
    }


def check_rows(svc: Services, demo: Demo, rng: random.Random) -> int:
    """Create one lead through the service and compare its row with ours; the first free lead number."""
    body = random_lead(rng, demo)
    caller = Caller(demo.team_id, "admin", demo.admin_id)
    _, made = svc.run(create_process, caller, "lead", CreateProcess.model_validate(body))
    with svc.engine.connect() as conn:
        app = dict(conn.execute(sa.select(t.processes).where(t.processes.c.id == made["id"])).one()._mapping)
    ours = lead_row(demo, body, id=app["id"], number=int(app["pk_value"][5:]), at=app["created_at"])
    if list(ours) != COLUMNS or ours != app:
        diff = {k: (app.get(k), ours.get(k)) for k in COLUMNS if app.get(k) != ours.get(k)}
        raise RuntimeError(f"generated rows differ from the app's (app, ours): {diff}")
    return int(app["pk_value"][5:]) + 1


def record_id(number: int) -> str:
    return str(uuid.UUID(int=number, version=4))


def record_rows(demo: Demo, n: int) -> Iterator[dict[str, Any]]:
    """The ``records`` rows of N customers (ids made from their numbers), written a year ago."""
    at = int(time.time() * 1000) - YEAR_MS
    attr = demo.customer
    for i in range(n):
        data = {attr["phone_number"]: phone(i), attr["email"]: email(i)}
        yield {
            "id": record_id(i),
            "team_id": demo.team_id,
            "entity_id": demo.entity_id,
            "pk_value": phone(i),
            "data": data,
            "created_at": at,
            "updated_at": at,
        }


def lead_rows(demo: Demo, n: int, *, first: int, seed: int, keep: list[tuple[str, str]]) -> Iterator[Any]:
    """N lead rows created one after the other over the past year, as the API would have written them, each
    for one of the customers; every (n // 1000)th (id, lead_id) is appended to ``keep``."""
    rng, start, gap = random.Random(seed), int(time.time() * 1000) - YEAR_MS, max(1, YEAR_MS // n)
    step, customers = max(1, n // 1000), customers_of(n)
    for i in range(n):
        row_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        at = start + i * gap + rng.randrange(gap)
        row = lead_row(demo, random_lead(rng, demo), id=row_id, number=first + i, at=at)
        row["entity_id"], row["record_id"] = demo.entity_id, record_id(rng.randrange(customers))
        if i % step == 0:
            keep.append((row_id, row["pk_value"]))
        yield row


def customers_of(n: int) -> int:
    return max(1, n // PER_CUSTOMER)


def chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row for the driver: JSON columns as text (compact, as orjson writes them)."""
    json: dict[str, str] = {k: orjson.dumps(row[k]).decode() for k in ("data", "derived_data") if k in row}
    return tuple({**row, **json}.values())


@dataclass
class Load:
    """How to load one backend: its driver connection, the insert, and the statements around it."""

    connect: Callable[[], Any]
    insert: Callable[[Any, str, list[str], Iterable[tuple[Any, ...]]], None]  # (conn, table, columns, rows)
    analyze: tuple[str, ...]  # what runs after the indexes are built
    setup: tuple[str, ...] = ()


def sqlite_load(path: str) -> Load:
    def insert(conn: Any, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn.execute("BEGIN IMMEDIATE")  # one transaction: each page is written to the WAL once
        for chunk in chunks(rows, 100_000):
            conn.executemany(sql, chunk)
        conn.execute("COMMIT")

    return Load(
        connect=lambda: sqlite3.connect(path, isolation_level=None),
        insert=insert,
        analyze=("ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"),  # readers need no trip through the WAL
        # 1 GiB of cache for the random uuid keys, index sorts in memory; a throwaway file needs no fsync
        setup=("PRAGMA cache_size=-1048576", "PRAGMA temp_store=MEMORY", "PRAGMA synchronous=OFF"),
    )


def postgresql_load(conninfo: str) -> Load:
    def insert(conn: Any, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    return Load(
        connect=lambda: psycopg.connect(conninfo, autocommit=True),
        insert=insert,
        analyze=("VACUUM (ANALYZE)",),
        setup=("SET maintenance_work_mem = '512MB'",),
    )


def words_ddl(conn: Any, sqlite: bool) -> tuple[list[str], list[str]]:
    """The statements that drop text search's upkeep of ``processes`` and ``records`` for the load, and those
    that make it again afterwards (PostgreSQL: their GIN indexes; SQLite: the insert triggers, and the FTS5
    tables' rows, written as the app's commits write them)."""
    drop, make = [], []
    for table, fts in TABLES.items():
        if sqlite:
            (trigger,) = conn.execute(
                f"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = '{fts}_insert'"
            ).fetchone()
            drop += [f"DROP TRIGGER {fts}_insert", f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')"]
            # every row, settled after
            make += [f"INSERT INTO {fts}_pending SELECT rowid, 0, NULL FROM {table}", trigger]
        else:
            (index,) = conn.execute(
                f"SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_{table}_words'"
            ).fetchone()
            drop, make = [*drop, f"DROP INDEX ix_{table}_words"], [*make, index]
    return drop, make


def build(svc: Services, demo: Demo, n: int) -> tuple[list[tuple[str, str]], str]:
    """Write N leads and their customers (secondary indexes dropped, then rebuilt as the migration defines
    them), ANALYZE; a sample of (id, lead_id) to read back, and a line saying how long it took."""
    first = check_rows(svc, demo, random.Random(1))
    sample: list[tuple[str, str]] = []
    rows = (values(row) for row in lead_rows(demo, n, first=first, seed=2, keep=sample))
    url = sa.make_url(svc.settings.url)
    if svc.settings.is_sqlite:
        load = sqlite_load(str(url.database))
    else:
        load = postgresql_load(url.set(drivername="postgresql").render_as_string(hide_password=False))
    indexes = sorted(t.processes.indexes, key=lambda ix: str(ix.name))
    ddl = [
        [str(make(ix).compile(dialect=svc.engine.dialect)) for ix in indexes]
        for make in (DropIndex, CreateIndex)
    ]
    conn = load.connect()
    try:
        words = words_ddl(conn, svc.settings.is_sqlite)  # text search's, kept by the database: rebuilt after
        for statement in [*load.setup, *ddl[0], *words[0]]:
            conn.execute(statement)
        times = [time.perf_counter()]
        gc.disable()  # a million short-lived dicts: the collector would only rescan them
        try:
            load.insert(conn, "records", RECORD_COLUMNS, map(values, record_rows(demo, customers_of(n))))
            load.insert(conn, "processes", COLUMNS, rows)
        finally:
            gc.enable()
        times.append(time.perf_counter())
        for statement in ddl[1]:
            conn.execute(statement)
        times.append(time.perf_counter())
        for statement in words[1]:
            conn.execute(statement)
        if svc.settings.is_sqlite:  # the words of the rows noted, as a commit of the app writes them
            conn.execute("BEGIN IMMEDIATE")
            settle(conn)
            conn.execute("COMMIT")
        times.append(time.perf_counter())
        for statement in load.analyze:
            conn.execute(statement)
        times.append(time.perf_counter())
        size = conn.execute(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            if svc.settings.is_sqlite
            else "SELECT pg_database_size(current_database())"
        ).fetchone()[0]
    finally:
        conn.close()
    c = t.counters.c  # the next lead created through the API gets a free lead_id
    with svc.engine.begin() as db:
        db.execute(
            t.counters.update()
            .where(c.procedure_id == demo.procedure_id, c.attribute_id == demo.attr["lead_id"])
            .values(value=first + n - 1)
        )
    insert, index, text, analyze = (b - a for a, b in itertools.pairwise(times))
    line = (
        f"{n:,} leads ({customers_of(n):,} customers) in {times[-1] - times[0]:.0f} s: insert {insert:.0f} s ({n / insert:,.0f} rows/s), "
        f"{len(indexes)} indexes {index:.0f} s, text search index {text:.0f} s, {load.analyze[0]} "
        f"{analyze:.0f} s; database {size / 2**30:.2f} GiB"
    )
    return random.Random(3).sample(sample, len(sample)), line
