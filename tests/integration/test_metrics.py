"""Each metric moves when its event happens, on SQLite and PostgreSQL: read from ``GET /metrics`` of the real
app (the counters are this process's, so each test compares a figure before and after)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from procession.api.app import create_app
from procession.domain.clock import now_ms
from procession.logs import Structured
from procession.store import tables as t
from procession.store.tasks import NewTask
from tests.conftest import Team
from tests.fakes.receiver import Receiver, Reply
from tests.integration import automation, bulk
from tests.integration.test_automations import converted
from tests.integration.test_webhooks import deliver, subscribe


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def http(team: Team) -> Iterator[TestClient]:
    with TestClient(create_app(team.services), headers={"Authorization": f"Bearer {team.key()}"}) as client:
        yield client


def scrape(http: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_request_is_counted_by_its_route_template_and_status_with_its_latency(http: TestClient) -> None:
    route = "/v1/ext/procedure/{procedureShortId}/process/{processId}"
    before = scrape(http)
    assert http.get("/v1/ext/procedure/lead/process/00000000-0000-0000-0000-000000000000").status_code == 404
    after = scrape(http)
    labels = {"method": "GET", "route": route, "status": "404"}
    count = "procession_http_request_duration_seconds_count"
    assert value(after, count, **labels) == value(before, count, **labels) + 1
    total = "procession_http_request_duration_seconds_sum"
    assert value(after, total, **labels) > value(before, total, **labels)
    inf = "procession_http_request_duration_seconds_bucket"
    assert value(after, inf, **labels, le="+Inf") == value(before, inf, **labels, le="+Inf") + 1


def test_a_path_no_route_takes_is_counted_under_one_label_not_its_text(http: TestClient) -> None:
    before = scrape(http)
    assert http.get("/no/such/path/xyz-123").status_code == 404
    after = scrape(http)
    count = "procession_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, count, **labels) == value(before, count, **labels) + 1
    assert not any("xyz-123" in str(key) for key in after)


def test_a_bulk_job_counts_its_entries_by_outcome_and_itself_once_finished(
    team: Team, http: TestClient
) -> None:
    lead, gone = bulk.create(team, {}), bulk.create(team, {})
    bulk.submit(team, [{"id": gone["id"], "isDeleted": True}])
    bulk.drain(team)
    before = scrape(http)
    job = bulk.submit(
        team,
        [
            {"id": lead["id"], "data": {"score": 2}},  # SUCCESS
            {"id": gone["id"], "data": {"score": 2}},  # ERROR: deleted
            {"status": "COMPLETED"},  # INVALID: no identifier
        ],
    )
    middle = scrape(http)
    entries = "procession_bulk_entries_total"
    assert value(middle, entries, kind="update", outcome="INVALID") == (
        value(before, entries, kind="update", outcome="INVALID") + 1
    )
    bulk.drain(team)
    assert bulk.job(team, job["id"])["status"] == "COMPLETED"
    after = scrape(http)
    for outcome in ("SUCCESS", "ERROR"):
        assert value(after, entries, kind="update", outcome=outcome) == (
            value(middle, entries, kind="update", outcome=outcome) + 1
        )
    jobs = "procession_bulk_jobs_finished_total"
    assert value(after, jobs, kind="update", outcome="COMPLETED") == (
        value(before, jobs, kind="update", outcome="COMPLETED") + 1
    )


def test_runs_and_step_attempts_are_counted_by_outcome_with_their_latency(
    team: Team, http: TestClient, receiver: Receiver
) -> None:
    receiver.script("/flaky", Reply(500))
    automation.define(team, converted(f"{receiver.url}/flaky"))
    before = scrape(http)
    automation.update(team, automation.create(team)["id"], {"state": "CONVERTED"})
    automation.work(team)
    after = scrape(http)
    runs = "procession_automation_runs_finished_duration_seconds_count"
    assert value(after, runs, outcome="SUCCEEDED") == value(before, runs, outcome="SUCCEEDED") + 1
    attempts = "procession_automation_step_attempt_duration_seconds_count"
    for outcome in ("RETRY", "OK"):
        assert value(after, attempts, outcome=outcome) == value(before, attempts, outcome=outcome) + 1


def test_webhook_delivery_attempts_are_counted_by_outcome(
    team: Team, http: TestClient, receiver: Receiver
) -> None:
    receiver.script("/hook", Reply(503))
    subscribe(team, f"{receiver.url}/hook", ["process.created"])
    before = scrape(http)
    automation.create(team)
    deliver(team)
    after = scrape(http)
    name = "procession_webhook_delivery_attempts_total"
    for outcome in ("RETRY", "OK"):
        assert value(after, name, outcome=outcome) == value(before, name, outcome=outcome) + 1


def test_pending_work_is_read_when_scraped_by_kind_with_the_age_of_the_oldest_due(
    team: Team, http: TestClient
) -> None:
    kind = f"test.kind.{team.slug}"  # of this test alone: no runner has a handler, none runs it
    assert value(scrape(http), "procession_tasks_pending", kind=kind) == 0
    with team.uow() as uow:
        uow.tasks.add(kind, [NewTask("a"), NewTask("b", wake_at=now_ms() + 3_600_000)], now=now_ms() - 60_000)
        uow.commit()
    samples = scrape(http)
    assert value(samples, "procession_tasks_pending", kind=kind) == 2
    assert 60 <= value(samples, "procession_tasks_oldest_due_age_seconds", kind=kind) < 3600
    with team.uow() as uow:
        uow.conn.execute(t.tasks.delete().where(t.tasks.c.team_id == team.id, t.tasks.c.kind == kind))
        uow.commit()


def test_the_connection_pool_is_reported(http: TestClient) -> None:
    samples = scrape(http)
    names = {name for name, _ in samples}
    assert {"procession_db_pool_checked_out", "procession_db_pool_checked_in"} <= names
    assert value(samples, "procession_db_pool_checked_out") >= 0


def test_metrics_can_ask_for_a_token(team: Team) -> None:
    settings = team.services.settings.model_copy(update={"metrics_token": SecretStr("scrape-me-please")})
    services = type(team.services)(settings=settings, engine=team.services.engine)
    with TestClient(create_app(services)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert ok.status_code == 200 and "procession_tasks_pending" in ok.text


def test_a_bulk_job_s_log_lines_name_the_request_that_submitted_it(
    team: Team, http: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    lead = bulk.create(team, {})
    caplog.set_level(logging.INFO)
    r = http.patch(
        "/v1/ext/procedure/lead/process",
        json={"processes": [{"id": lead["id"], "data": {"score": 3}}]},
        headers={"X-Request-ID": f"req-{team.slug}"},
    )
    assert r.status_code == 202, r.text
    assert r.headers["x-request-id"] == f"req-{team.slug}"
    bulk.drain(team)
    finished = [
        rec for rec in caplog.records if rec.getMessage() == f"job {r.json()['_data']['id']} completed"
    ]
    assert len(finished) == 1 and getattr(finished[0], "request_id", None) == f"req-{team.slug}"
    line = orjson.loads(Structured("json").format(finished[0]))  # as the log shows it, outside the request
    assert line["request_id"] == f"req-{team.slug}" and line["kind"] == "update"


def test_the_dashboard_and_the_readme_name_only_metrics_that_are_served(http: TestClient) -> None:
    families = list(text_string_to_metric_families(http.get("/metrics").text))
    served = {f.name for f in families} | {
        f"{f.name}{suffix}" for f in families for suffix in SUFFIXES[f.type]
    }
    root = Path(__file__).parents[2]
    named = set(re.findall(r"procession_[a-z_]+", (root / "docs" / "grafana-dashboard.json").read_text()))
    readme = (root / "README.md").read_text()
    section = readme[readme.index("### Metrics") : readme.index("### Logs")]
    named |= set(re.findall(r"`(procession_[a-z_]+)`", section))
    pool = next(line for line in section.splitlines() if "`procession_db_pool_size`" in line)
    named |= {f"procession_db_pool{suffix}" for suffix in re.findall(r"`(_[a-z_]+)`", pool)}
    assert len(named) >= 10 and named <= served, named - served


SUFFIXES = {"counter": ("_total",), "histogram": ("_count", "_sum", "_bucket"), "gauge": ()}


def test_an_automation_run_s_log_line_names_the_request_whose_save_started_it(
    team: Team, http: TestClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    automation.define(team, converted(f"{receiver.url}/crm"))
    lead = automation.create(team)
    caplog.set_level(logging.INFO)
    r = http.put(
        f"/v1/ext/procedure/lead/process/{lead['id']}",
        json={"state": "CONVERTED"},
        headers={"X-Request-ID": "convert-1"},
    )
    assert r.status_code == 200, r.text
    automation.work(team)
    (run,) = automation.runs(team)
    done = [rec for rec in caplog.records if rec.getMessage() == f"run {run['id']} succeeded"]
    assert len(done) == 1 and getattr(done[0], "request_id", None) == "convert-1"
