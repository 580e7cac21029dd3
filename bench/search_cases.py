"""The queries of ``search.py``: each a label and the calls it makes (a repeated body, or a cursor walk).

Labels start with the kind of query: ``a``-``b`` filters and sorts, ``c`` cursor walks, ``d`` offsets, ``e``
reads of one, ``f`` text search (``q``), ``r`` filters on the process's record (``record.<shortId>``), ``z``
the HTTP floor; ``--only`` picks queries by these prefixes.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from search_data import customers_of, email, phone

CITY = "Kochi"  # the city filtered on (about 2% of the rows, like every city)
WARMUP = 5  # first requests of a repeated query, not recorded


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


def queries(sample: list[tuple[str, str]], args: argparse.Namespace) -> list[Run]:
    """The queries measured, each with the calls it makes."""
    n, pages = args.requests + WARMUP, args.pages
    newest = {"limit": 50}
    state = {"where": {"state": "IN_PROGRESS", "status": "OPEN"}, **newest}
    score = {"where": {"score": {">=": 90}}, "sort": [{"field": "score", "dir": "desc"}], **newest}
    refs = list(itertools.islice(itertools.cycle(sample), n))
    lead_id = sample[len(sample) // 2][1]
    customers = customers_of(args.processes)
    one, other = customers // 3, customers // 2  # customers (about 4 leads each)
    now = time.time()
    window = {">": _iso(now - 300 * 86_400), "<": _iso(now - 10 * 86_400)}
    vendor = {  # the example of the vendor's list query, its attributes the customer's
        "status": "OPEN",
        "state": "NEW",
        "createdAt": window,
        "or": [{"record.email": email(one)}, {"record.phone_number": phone(other)}],
    }

    def same(body: dict[str, Any]) -> Stream:
        return repeat([Call(body)] * n)

    def same_path(path: str) -> Stream:
        return repeat([Call(path=path)] * n)

    runs = [
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
        Run("f5 q=referral (1 in 3)", same({"q": "referral", **newest})),
        Run(f"f6 q={phone(one)} (record side)", same({"q": phone(one), **newest})),
        Run(
            "f7 q=Mosby, sort score desc",
            same({"q": "Mosby", "sort": [{"field": "score", "dir": "desc"}], **newest}),
        ),
        Run(
            "f8 q=Wharmby Kochi, state=NEW",
            same({"q": "Wharmby Kochi", "where": {"state": "NEW"}, **newest}),
        ),
        Run("r1 record.email=<one customer's>", same({"where": {"record.email": email(one)}, **newest})),
        Run("r2 the vendor's example (or: record.)", same({"where": vendor, **newest})),
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
    only = tuple(args.only.split(",")) if args.only else ()
    return [run for run in runs if run.label.startswith(only)] if only else runs


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
