"""Benchmark of the console's pages with a big procedure: each page's server time and time through HTTP.

    .venv/bin/python bench/console.py [--backend sqlite|postgresql|both] [--processes 1000000]

Per backend: a fresh database holding the demo team and N leads (``search_data.py``, as ``search.py`` builds
it), the demo admin given a console password, an automation, a run and a batch job over a few leads. The
real server runs as a subprocess; one client signs in as a person would and asks for every page in turn,
``--requests`` times each (after a few not recorded). The server's time is the ``Server-Timing`` header the
console sets on each page (from the request reaching the route to its reply); the HTTP time is the client's.
Prints p50/p95 per page (milliseconds) and whether every page's server p95 is under 200 ms.
Everything runs on 127.0.0.1; every loop is bounded in count; the server is stopped even on error.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import fresh_database, serving
from search_data import Demo, build, prepare  # bench/search_data.py, next to this file

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.services.accounts import set_password
from procession.services.automations import AutomationInput, run_automation, save_automation
from procession.services.batches import BatchInput, submit_batch
from procession.services.common import Caller
from procession.services.connectors import ConnectorInput, create_connector
from procession.services.webhooks import WebhookInput, create_webhook

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench password 1"
TARGET_P95_MS = 200.0
WARMUP = 3


def extras(svc: Services, demo: Demo, sample: list[tuple[str, str]]) -> dict[str, str]:
    """What the pages show besides processes: an automation, a run of it and a batch job."""
    svc.run(set_password, demo.team_id, "admin", PASSWORD)
    caller = Caller(demo.team_id, "admin", demo.admin_id)
    step = {"name": "mark", "type": "update_process", "data": {"city": "'Pune'"}}
    body = {"name": "mark", "trigger": {"type": "manual"}, "steps": [step]}
    automation = svc.run(save_automation, demo.team_id, "lead", AutomationInput.model_validate(body))
    run = svc.run(run_automation, caller, "lead", sample[0][0], automation["id"])
    ids = [process_id for process_id, _ in sample[1:101]]
    job = svc.run(submit_batch, caller, "lead", automation["id"], BatchInput(ids=ids))
    body = ConnectorInput(name="crm", kind="http", baseUrl="http://127.0.0.1:9", credentials={"auth": "x"})
    connector = svc.run(create_connector, demo.team_id, body, vault=svc.vault)
    hook = svc.run(
        create_webhook, demo.team_id, WebhookInput(url="http://127.0.0.1:9/hook", eventTypes=["run.failed"])
    )
    return {"run": str(run["id"]), "job": str(job["id"]), "connector": connector["id"], "webhook": hook["id"]}


def signed_in(client: httpx.Client, team: str = "demo") -> None:
    form = client.get("/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    reply = client.post(
        "/sign-in", data={"csrf": csrf.group(1), "team": team, "username": "admin", "password": PASSWORD}
    )
    assert reply.status_code == 303, reply.text


def pages(client: httpx.Client, sample: list[tuple[str, str]], made: dict[str, str]) -> list[tuple[str, str]]:
    """(name, path) of every page measured."""
    first = client.get("/procedures/lead/processes").text
    cursor = re.search(r'href="\?([^"]*cursor=[^"]+)" rel="next"', first)
    assert cursor is not None, "the table has no next page"
    more = re.search(
        r'href="(/procedures/lead/board/NEW\?cursor=[^"]+)"', client.get("/procedures/lead/board").text
    )
    assert more is not None, "the board's first column has no more cards"
    table = "/procedures/lead/processes"
    return [
        ("procedures", "/procedures"),
        ("procedure", "/procedures/lead"),
        ("processes: table", table),
        ("processes: page 2 (cursor)", f"{table}?{cursor.group(1).replace('&amp;', '&')}"),
        ("processes: status + state", f"{table}?status=OPEN&state=IN_PROGRESS"),
        ("processes: assignee", f"{table}?assignee=shane.warne"),
        ("processes: city = Kochi", f"{table}?attribute=city&value=Kochi"),
        ("processes: oldest first", f"{table}?sort=createdAt&dir=asc"),
        ("processes: a whole key", f"{table}?q={sample[5][1]}"),
        ("processes: key starts with, all", f"{table}?q=LEAD-"),
        ("processes: key starts with, none", f"{table}?q=LEAD-0"),
        ("board", "/procedures/lead/board"),
        ("board: a column's next cards", more.group(1).replace("&amp;", "&")),
        ("new lead form", "/procedures/lead/processes/new"),
        ("process", "/processes/{id}"),
        ("process: edit", "/processes/{id}/edit"),
        ("automations", "/procedures/lead/automations"),
        ("automation settings", "/procedures/lead/automations/mark"),
        ("run", f"/runs/{made['run']}"),
        ("control panel", "/control-panel?procedure=lead"),
        ("control panel: count, all", "/control-panel/count?procedure=lead"),
        ("control panel: count, OPEN", "/control-panel/count?procedure=lead&status=OPEN"),
        ("jobs", "/jobs"),
        ("job", f"/jobs/{made['job']}"),
        ("records", "/entities/customer/records"),
        ("API keys", "/settings/keys"),
        ("users", "/settings/users"),
        ("connectors", "/settings/connectors"),
        ("connector", f"/settings/connectors/{made['connector']}"),
        ("webhook subscriptions", "/settings/webhooks"),
        ("webhook and its deliveries", f"/settings/webhooks/{made['webhook']}"),
        ("API docs", "/docs"),
    ]


def measure(
    client: httpx.Client, path: str, sample: list[tuple[str, str]], n: int
) -> tuple[list[float], ...]:
    """Server and HTTP times (ms) of ``n`` requests for ``path`` (``{id}``: a lead of the sample each time)."""
    server, http = [], []
    for i in range(WARMUP + n):
        url = path.replace("{id}", sample[i % len(sample)][0])
        started = time.perf_counter()
        reply = client.get(url)
        took = (time.perf_counter() - started) * 1000
        assert reply.status_code in (200, 303), f"{url}: {reply.status_code} {reply.text[:300]}"
        timing = re.search(r"app;dur=([0-9.]+)", reply.headers.get("server-timing", ""))
        if i >= WARMUP:
            server.append(float(timing.group(1)) if timing else took)
            http.append(took)
    return server, http


def p(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def bench(backend: str, args: argparse.Namespace) -> bool:
    with (
        tempfile.TemporaryDirectory(prefix="procession-console-") as tmp_name,
        fresh_database(backend, Path(tmp_name), pg_server=args.pg_url) as url,
    ):
        tmp = Path(tmp_name)
        settings = Settings(data_dir=tmp / "data", database_url=url)
        svc = bootstrap(settings)
        try:
            demo = prepare(svc)
            sample, built = build(svc, demo, args.processes)
            made = extras(svc, demo, sample)
        finally:
            svc.close()
        print(f"\n=== {backend}: {built}", flush=True)
        env = {**os.environ, "PROCESSION_DATABASE_URL": url, "PROCESSION_DATA_DIR": str(settings.data_dir)}
        with (
            serving([sys.executable, "-m", "procession.cli", "serve"], env, tmp / "server.log") as (
                server,
                _,
            ),
            httpx.Client(base_url=server, timeout=120) as client,
        ):
            signed_in(client)
            print(f"{'page':34} {'server p50':>10} {'p95':>8} {'HTTP p50':>10} {'p95':>8}")
            worst = 0.0
            for name, path in pages(client, sample, made):
                server_ms, http_ms = measure(client, path, sample, args.requests)
                worst = max(worst, p(server_ms, 95))
                print(
                    f"{name:34} {p(server_ms, 50):10.1f} {p(server_ms, 95):8.1f} "
                    f"{p(http_ms, 50):10.1f} {p(http_ms, 95):8.1f}",
                    flush=True,
                )
        held = worst < TARGET_P95_MS
        print(f"{backend}: every page's server p95 < {TARGET_P95_MS:.0f} ms: {'yes' if held else 'NO'} "
              f"(slowest p95 {worst:.1f} ms)")  # fmt: skip
        return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--processes", type=int, default=1_000_000, help="lead processes to write")
    parser.add_argument("--requests", type=int, default=40, help="requests per page (default 40)")
    parser.add_argument("--pg-url", default=PG_URL, help="a PostgreSQL server (its database is ignored)")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # unwind, so the server stops and the database goes
        signal.signal(signum, lambda signum, _frame: sys.exit(128 + signum))
    held = [bench(b, args) for b in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,))]
    return 0 if all(held) else 1


if __name__ == "__main__":
    sys.exit(main())
