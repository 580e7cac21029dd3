"""Metrics in the Prometheus format: what happened in this process (counters and histograms, moved where it
happens), and, read when scraped, the pending work in the database and this process's connection pool.

Every process serves its own: each ``procession serve`` at ``/metrics``, each ``procession worker`` on
``--metrics-port``; Prometheus scrapes them all and sums (no shared files between processes, which may be
on different machines). The pending work is the database's, so every process reports the same figure: take
``max`` across instances, not ``sum``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from procession.store import tables as t
from procession.store.statement import ACROSS_TEAMS

disable_created_metrics()  # no ``*_created`` series: half the text to scrape, nothing a dashboard reads
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds: requests, step calls
LONG = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 24 * 3600.0)  # runs, queued to done

REQUESTS = Histogram(
    "procession_http_request_duration_seconds",
    "HTTP requests by method, route template and status: time to the end of the reply",
    ["method", "route", "status"],
    buckets=LATENCY,
)
BULK_JOBS = Counter(
    "procession_bulk_jobs_finished", "Bulk jobs finished, by kind and outcome", ["kind", "outcome"]
)
BULK_ENTRIES = Counter(
    "procession_bulk_entries", "Bulk job entries with a result, by kind and outcome", ["kind", "outcome"]
)
RUNS = Histogram(
    "procession_automation_runs_finished_duration_seconds",
    "Automation runs finished, by outcome: time from the run's creation to its end",
    ["outcome"],
    buckets=LONG,
)
STEP_ATTEMPTS = Histogram(
    "procession_automation_step_attempt_duration_seconds",
    "Attempts of automation steps, by outcome (OK RETRY FAILED SKIPPED WAIT): how long each took",
    ["outcome"],
    buckets=LATENCY,
)
DELIVERIES = Counter(
    "procession_webhook_delivery_attempts",
    "Webhook delivery attempts by outcome: OK, RETRY (tried again later), FAILED (given up)",
    ["outcome"],
)

T = t.tasks.c
_PENDING = (
    sa.select(
        T.kind,
        sa.func.count(),
        sa.func.min(sa.case((T.wake_at <= sa.bindparam("b_now"), T.wake_at))),
    )
    .where(T.status == "PENDING")
    .group_by(T.kind)
    .prefix_with(ACROSS_TEAMS)
)


class Pending(Collector):
    """Pending tasks by kind and the age of the oldest due one, read when scraped (on ``ix_tasks_pending``:
    only pending rows are read); and the engine's connection pool."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        now = int(time.time() * 1000)
        pending = GaugeMetricFamily(
            "procession_tasks_pending", "Pending background tasks by kind", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "procession_tasks_oldest_due_age_seconds",
            "How long the oldest due pending task of a kind has waited to be run (0: none due)",
            labels=["kind"],
        )
        with self.engine.connect() as conn:
            rows = conn.execute(_PENDING, {"b_now": now}).all()
        for kind, count, due in rows:
            pending.add_metric([kind], count)
            oldest.add_metric([kind], max(0, now - due) / 1000 if due is not None else 0)
        yield pending
        yield oldest
        yield from pool_metrics(self.engine.pool)


def pool_metrics(pool: Any) -> Iterable[GaugeMetricFamily]:
    """The connection pool: its size, connections in use and idle, and those over its size."""
    figures = {
        "size": "Connections the pool keeps",
        "checked_out": "Connections in use",
        "checked_in": "Idle connections in the pool",
        "overflow": "Connections opened beyond the pool's size",
    }
    for name, doc in figures.items():
        read = getattr(pool, name.replace("_", ""), None)
        if callable(read):
            yield GaugeMetricFamily(f"procession_db_pool_{name}", doc, value=read())


def exposition(engine: sa.Engine) -> bytes:
    """The text a scrape gets: this process's counters, then what is read now."""
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(Pending(engine))
    return generate_latest(REGISTRY) + generate_latest(scraped)


def serve_worker_metrics(engine: sa.Engine, port: int, host: str) -> None:
    """A worker's metrics on ``host:port`` (a thread of its own), pending work included."""
    from prometheus_client import start_http_server

    REGISTRY.register(Pending(engine))
    start_http_server(port, addr=host)
