"""Automations over HTTP against a real server (and, on PostgreSQL, a real worker) calling a local receiver:
defined, versioned and checked by admins; run by hand or by a state reached; followed, resumed, re-run and
cancelled; never another team's, never a 500."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import make_team
from tests.e2e.conftest import Api
from tests.fakes.receiver import Receiver, Reply

AUTOMATIONS = "/v1/admin/procedures/lead/automations"
LEADS = "/v1/ext/procedure/lead/process"
QUICK = {"maxAttempts": 2, "backoffSeconds": 0.05}
FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def post(url: str, **step: Any) -> dict[str, Any]:
    return {"name": "post", "type": "http", "method": "POST", "url": url, **step}


def manual(url: str, **more: Any) -> dict[str, Any]:
    return {"name": "push", "trigger": {"type": "manual"}, "steps": [post(url)], "retry": QUICK} | more


def define(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    r = api.http.post(AUTOMATIONS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


def refused(api: Api, body: dict[str, Any]) -> dict[str, str]:
    """The 422 an automation gets: its errors, message by field."""
    r = api.http.post(AUTOMATIONS, json={"name": "bad", **body})
    assert r.status_code == 422, r.text
    return {e["field"]: e["message"] for e in r.json()["_errors"]}


def create_lead(api: Api, **body: Any) -> dict[str, Any]:
    r = api.http.post(LEADS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["_data"]


def run_now(api: Api, lead_id: str, automation_id: str) -> dict[str, Any]:
    r = api.http.post(f"{LEADS}/{lead_id}/automations/{automation_id}/run")
    assert r.status_code == 202, r.text
    return r.json()["_data"]


def until(found: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """``found()`` once it is truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def run_of(api: Api, run_id: int) -> dict[str, Any]:
    r = api.http.get(f"/v1/ext/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()["_data"]


def settled(api: Api, run_id: int, status: str = "SUCCEEDED") -> dict[str, Any]:
    """The run once it has finished (or reached ``status``); it must be ``status``."""

    def reached() -> dict[str, Any] | None:
        run = run_of(api, run_id)
        return run if run["status"] in (*FINISHED, status) else None

    run = until(reached, f"run {run_id} to be {status}")
    assert run["status"] == status, run
    return run


def finished(api: Api, job_id: str) -> None:
    """Wait until a bulk job has completed."""
    job = f"/v1/ext/background-job/{job_id}"
    until(lambda: api.http.get(job).json()["_data"]["status"] == "COMPLETED", f"job {job_id}")


def runs(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = api.http.get("/v1/ext/runs", params=params)
    assert r.status_code == 200, r.text
    return r.json()["_data"]


def test_an_automation_is_created_listed_read_versioned_and_deleted(api: Api, receiver: Receiver) -> None:
    created = define(api, manual(f"{receiver.url}/crm"))
    assert created["version"] == 1 and created["trigger"] == {"type": "manual"}
    assert created["retry"] == QUICK and created["steps"][0]["url"] == f"{receiver.url}/crm"
    url = f"{AUTOMATIONS}/{created['id']}"
    assert [a["id"] for a in api.http.get(AUTOMATIONS).json()["_data"]] == [created["id"]]
    assert api.http.get(url).json()["_data"] == created

    changed = api.http.put(url, json=manual(f"{receiver.url}/crm2", version=1))
    assert changed.status_code == 200, changed.text
    assert changed.json()["_data"]["version"] == 2
    assert changed.json()["_data"]["steps"][0]["url"] == f"{receiver.url}/crm2"
    stale = api.http.put(url, json=manual(f"{receiver.url}/crm3", version=1))
    assert stale.status_code == 409 and stale.json()["_errors"][0]["field"] == "version"
    assert api.http.get(url).json()["_data"]["version"] == 2

    clash = api.http.post(AUTOMATIONS, json=manual(f"{receiver.url}/x"))  # the same name
    assert clash.status_code == 409
    deleted = api.http.delete(url)
    assert deleted.status_code == 200 and deleted.json()["_data"] == {"id": created["id"], "deleted": True}
    assert api.http.get(url).status_code == 404
    assert api.http.get(AUTOMATIONS).json()["_data"] == []
    assert api.http.delete(url).status_code == 404
    assert api.http.get("/v1/admin/procedures/nope/automations").status_code == 404


def test_a_malformed_expression_is_refused_naming_its_step_line_and_column(api: Api) -> None:
    errors = refused(
        api,
        {
            "trigger": {"type": "created"},
            "condition": "process.data.score >",
            "steps": [post("https://example.com/x", body="{'a': process.data.score +}")],
        },
    )
    assert errors["steps[0].body"].startswith("step 1 (post) body: line 1, column 27")
    assert "line 1, column" in errors["condition"]
    assert api.http.get(AUTOMATIONS).json()["_data"] == []


def test_an_unknown_trigger_state_or_url_scheme_is_refused(api: Api) -> None:
    steps = [post("https://example.com/x")]
    assert "trigger.type" in refused(api, {"trigger": {"type": "sometimes"}, "steps": steps})
    unknown = refused(api, {"trigger": {"type": "state_reached", "state": "WON"}, "steps": steps})
    assert "trigger.state" in unknown
    ftp = refused(api, {"trigger": {"type": "manual"}, "steps": [post("ftp://example.com/x")]})
    assert "steps[0].url" in ftp
    assert "steps" in refused(api, {"trigger": {"type": "created"}, "steps": []})
    assert api.http.get(AUTOMATIONS).json()["_data"] == []


def test_a_member_cannot_define_an_automation_but_can_run_one(api: Api, receiver: Receiver) -> None:
    automation = define(api, manual(f"{receiver.url}/member"))
    with api.client(api.team.key("member", "shane.warne")) as member:
        assert member.post(AUTOMATIONS, json=manual(f"{receiver.url}/x", name="mine")).status_code == 403
        assert member.get(AUTOMATIONS).status_code == 403
        assert member.put(f"{AUTOMATIONS}/{automation['id']}", json=manual("")).status_code == 403
        assert member.delete(f"{AUTOMATIONS}/{automation['id']}").status_code == 403
        lead = create_lead(api)
        r = member.post(f"{LEADS}/{lead['id']}/automations/{automation['id']}/run")
        assert r.status_code == 202, r.text
        run_id = r.json()["_data"]["id"]
        until(lambda: member.get(f"/v1/ext/runs/{run_id}").json()["_data"]["status"] == "SUCCEEDED", "run")
    assert receiver.count("/member") == 1


def test_a_manual_run_is_followed_to_its_end_with_its_attempts(api: Api, receiver: Receiver) -> None:
    automation = define(
        api, manual(f"{receiver.url}/crm", steps=[post(f"{receiver.url}/crm", body="{'id': process.id}")])
    )
    lead = create_lead(api, data={"score": 7})
    accepted = run_now(api, lead["id"], automation["id"])
    assert accepted["status"] in ("PENDING", "RUNNING", "SUCCEEDED") and accepted["processId"] == lead["id"]
    assert accepted["automationId"] == automation["id"] and accepted["event"]["type"] == "manual"

    run = settled(api, accepted["id"])
    assert run["outputs"] == {"post": {"ok": True, "n": 1}} and run["error"] is None
    (attempt,) = run["attempts"]
    assert attempt["outcome"] == "OK" and attempt["statusCode"] == 200
    assert attempt["output"] == {"ok": True, "n": 1}
    assert attempt["request"]["url"] == f"{receiver.url}/crm" and attempt["request"]["method"] == "POST"
    assert attempt["request"]["body"] == {"id": lead["id"]}
    assert receiver.keys("/crm") == {f"run-{run['id']}-step-0": 1}

    found = runs(api, automation=automation["id"], status="SUCCEEDED")
    assert [r["id"] for r in found] == [run["id"]]
    assert runs(api, automation=automation["id"], status="FAILED") == []
    assert [r["id"] for r in runs(api, process=lead["id"])] == [run["id"]]
    for bad in ({"status": "DONE"}, {"before": "x"}, {"since": -1}, {"limit": 0}, {"limit": 501}):
        assert api.http.get("/v1/ext/runs", params=bad).status_code == 422, bad

    missing = api.http.post(f"{LEADS}/{lead['id']}/automations/nope/run")
    assert missing.status_code == 404
    assert api.http.post(f"{LEADS}/nope/automations/{automation['id']}/run").status_code == 404


def test_a_lead_moved_to_converted_runs_its_automation_exactly_once(api: Api, receiver: Receiver) -> None:
    automation = define(
        api,
        {
            "name": "converted",
            "trigger": {"type": "state_reached", "state": "CONVERTED"},
            "steps": [post(f"{receiver.url}/converted")],
            "retry": QUICK,
        },
    )
    lead = create_lead(api)
    assert api.http.put(f"{LEADS}/{lead['id']}", json={"data": {"score": 1}}).status_code == 200
    moved = api.http.put(f"{LEADS}/{lead['id']}", json={"state": "CONVERTED"})
    assert moved.status_code == 200 and moved.json()["_data"]["state"] == "CONVERTED"
    assert api.http.put(f"{LEADS}/{lead['id']}", json={"data": {"score": 2}}).status_code == 200
    # the bulk route too: still CONVERTED, nothing is reached again
    job = api.http.patch(
        LEADS, json={"processes": [{"id": lead["id"], "state": "CONVERTED", "data": {"score": 3}}]}
    )
    assert job.status_code == 202, job.text
    finished(api, job.json()["_data"]["id"])
    (run,) = runs(api, automation=automation["id"])  # every save has registered its runs by now
    assert run["processId"] == lead["id"] and run["event"]["type"] == "process.state_changed"
    settled(api, run["id"])
    assert receiver.count("/converted") == 1

    other = create_lead(api)  # moved by the bulk route: one run as well
    job = api.http.patch(LEADS, json={"processes": [{"id": other["id"], "state": "CONVERTED"}]})
    assert job.status_code == 202, job.text
    finished(api, job.json()["_data"]["id"])
    second = next(r for r in runs(api, automation=automation["id"]) if r["id"] != run["id"])
    assert second["processId"] == other["id"]
    settled(api, second["id"])
    assert len(runs(api, automation=automation["id"])) == 2 and receiver.count("/converted") == 2
    assert receiver.keys("/converted") == {f"run-{run['id']}-step-0": 1, f"run-{second['id']}-step-0": 1}


def test_a_failed_run_is_resumed_from_its_failed_step_and_rerun_from_the_first(
    api: Api, receiver: Receiver
) -> None:
    receiver.script("/second", Reply(500), Reply(500))
    steps = [post(f"{receiver.url}/first", name="first"), post(f"{receiver.url}/second", name="second")]
    automation = define(api, manual("", steps=steps))
    lead = create_lead(api)
    run = settled(api, run_now(api, lead["id"], automation["id"])["id"], "FAILED")
    assert run["step"] == 1 and "HTTP 500" in run["error"]
    assert [(a["name"], a["outcome"], a["statusCode"]) for a in run["attempts"]] == [
        ("first", "OK", 200),
        ("second", "RETRY", 500),
        ("second", "FAILED", 500),
    ]
    assert api.http.post(f"/v1/ext/runs/{run['id']}/rerun", json={"version": "newest"}).status_code == 422

    resumed = api.http.post(f"/v1/ext/runs/{run['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["_data"]["status"] in ("PENDING", "RUNNING", "SUCCEEDED")
    assert settled(api, run["id"])["outputs"]["second"] == {"ok": True, "n": 3}
    assert receiver.count("/first") == 1 and receiver.count("/second") == 3  # the first step not again
    assert api.http.post(f"/v1/ext/runs/{run['id']}/resume").status_code == 409  # it succeeded

    again = api.http.post(f"/v1/ext/runs/{run['id']}/rerun", json={"version": "current"})
    assert again.status_code == 202, again.text
    rerun = again.json()["_data"]
    assert rerun["id"] != run["id"] and rerun["rerunOf"] == run["id"] and rerun["processId"] == lead["id"]
    settled(api, rerun["id"])
    assert receiver.count("/first") == 2 and receiver.count("/second") == 4
    assert receiver.keys("/first") == {f"run-{run['id']}-step-0": 1, f"run-{rerun['id']}-step-0": 1}


def test_a_waiting_run_is_cancelled(api: Api, receiver: Receiver) -> None:
    steps = [{"name": "pause", "type": "wait", "seconds": 60}, post(f"{receiver.url}/after")]
    automation = define(api, manual("", steps=steps))
    lead = create_lead(api)
    run = settled(api, run_now(api, lead["id"], automation["id"])["id"], "WAITING")
    assert run["step"] == 1 and run["wakeAt"] > time.time() * 1000 + 50_000
    assert [a["outcome"] for a in run["attempts"]] == ["WAIT"]
    assert api.http.post(f"/v1/ext/runs/{run['id']}/rerun").status_code == 409  # unfinished

    cancelled = api.http.post(f"/v1/ext/runs/{run['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["_data"]["status"] == "CANCELLED"
    assert api.http.post(f"/v1/ext/runs/{run['id']}/cancel").status_code == 409
    assert run_of(api, run["id"])["status"] == "CANCELLED" and receiver.count("/after") == 0


def test_another_teams_runs_are_not_found(api: Api, receiver: Receiver) -> None:
    automation = define(api, manual(f"{receiver.url}/mine"))
    lead = create_lead(api)
    run = settled(api, run_now(api, lead["id"], automation["id"])["id"])
    other = make_team(api.team.services)
    with api.client(other.key()) as them:
        assert them.get(f"/v1/ext/runs/{run['id']}").status_code == 404
        for action in ("cancel", "resume", "rerun"):
            assert them.post(f"/v1/ext/runs/{run['id']}/{action}").status_code == 404, action
        assert them.get("/v1/ext/runs", params={"automation": automation["id"]}).json()["_data"] == []
        assert them.get(f"{AUTOMATIONS}/{automation['id']}").status_code == 404
        assert them.post(f"{LEADS}/{lead['id']}/automations/{automation['id']}/run").status_code == 404
    assert receiver.count("/mine") == 1


@pytest.mark.parametrize("run_id", ["abc", "1.5", "0", "-1", str(2**63), "9" * 40])
def test_a_run_id_that_is_not_a_number_is_a_422(api: Api, run_id: str) -> None:
    assert api.http.get(f"/v1/ext/runs/{run_id}").status_code == 422
    for action in ("cancel", "resume", "rerun"):
        assert api.http.post(f"/v1/ext/runs/{run_id}/{action}").status_code == 422, action


def test_an_unknown_run_id_is_a_404(api: Api) -> None:
    assert api.http.get(f"/v1/ext/runs/{2**63 - 1}").status_code == 404
    assert api.http.post(f"/v1/ext/runs/{2**63 - 1}/cancel").status_code == 404


def test_a_retry_goes_out_after_its_back_off_not_at_the_next_poll(api: Api, receiver: Receiver) -> None:
    """A run due again in 0.1 s is woken then: by the embedded runner (SQLite), or by a procrastinate job
    scheduled then (PostgreSQL), not at the runner's next poll (1 s) or the reconciler's round (5 s)."""
    receiver.script("/soon", Reply(500), Reply(500))
    automation = define(api, manual(f"{receiver.url}/soon", retry={"maxAttempts": 3, "backoffSeconds": 0.1}))
    run = run_now(api, create_lead(api)["id"], automation["id"])
    settled(api, run["id"])
    arrivals = [r.at for r in receiver.received("/soon")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 3 and max(gaps) < 0.8, gaps
