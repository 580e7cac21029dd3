"""Automations on SQLite and PostgreSQL against a local receiver: runs registered with their save, exactly
once; steps retried, cut at their deadline, resumed, re-run, cancelled; saves made by steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import standardwebhooks

from procession.domain.errors import Conflict, Invalid
from procession.services.automations import RunAgain, cancel_run, get_run, rerun, resume_run, run_automation
from procession.services.batches import BatchInput, FailedOf, submit_batch
from procession.services.jobs import abort_job
from tests.conftest import Team
from tests.fakes.receiver import Drop, Hang, Receiver, Reply
from tests.integration.automation import create, define, post, runs, update, work
from tests.integration.bulk import entries, job, submit

QUICK = {"maxAttempts": 4, "backoffSeconds": 0.05}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def converted(url: str, **more: object) -> dict:
    return {
        "trigger": {"type": "state_reached", "state": "CONVERTED"},
        "steps": [post(url)],
        "retry": QUICK,
    } | more


def test_a_lead_reaching_converted_runs_its_automation_once(team: Team, receiver: Receiver) -> None:
    define(team, converted(f"{receiver.url}/crm"))
    lead = create(team)
    update(team, lead["id"], {"data": {"score": 5}})
    work(team)
    assert runs(team) == [] and receiver.count() == 0
    update(team, lead["id"], {"state": "CONVERTED"})
    update(team, lead["id"], {"data": {"score": 6}})  # still CONVERTED: not reached again
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED" and run["processId"] == lead["id"] and run["version"] == 1
    assert run["event"]["type"] == "process.state_changed" and run["event"]["to"] is not None
    assert receiver.count("/crm") == 1
    assert run["outputs"]["post"] == {"ok": True, "n": 1}  # the reply's body is the step's output


def test_a_bulk_job_moving_1000_leads_gives_exactly_1000_runs(team: Team, receiver: Receiver) -> None:
    define(team, converted(f"{receiver.url}/crm"))
    created = submit(team, [{"data": {"score": n}} for n in range(1000)], kind="create")
    work(team)
    ids = [e["processId"] for e in entries(team, created["id"])]
    submit(team, [{"id": pid, "state": "CONVERTED"} for pid in ids])
    work(team, until=120)
    done = runs(team)
    assert len(done) == 1000 and {r["status"] for r in done} == {"SUCCEEDED"}
    assert sorted(r["processId"] for r in done) == sorted(ids)
    keys = receiver.keys("/crm")
    assert len(keys) == 1000 and set(keys.values()) == {1}  # one call per run, each its own key


def test_a_receiver_failing_twice_gives_one_success_and_three_attempts(
    team: Team, receiver: Receiver
) -> None:
    receiver.script("/flaky", Reply(500), Reply(503))
    define(team, converted(f"{receiver.url}/flaky"))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    work(team)
    (run,) = runs(team)
    detail = team.services.run(get_run, team.id, run["id"])
    assert detail["status"] == "SUCCEEDED"
    assert [(a["outcome"], a["statusCode"]) for a in detail["attempts"]] == [
        ("RETRY", 500),
        ("RETRY", 503),
        ("OK", 200),
    ]
    assert all(a["request"]["url"] == f"{receiver.url}/flaky" for a in detail["attempts"])  # with its input
    assert len(receiver.keys("/flaky")) == 1 and receiver.count("/flaky") == 3  # the same key every time


def test_a_receiver_that_acted_but_dropped_the_connection_is_called_again_with_the_same_key(
    team: Team, receiver: Receiver
) -> None:
    receiver.script("/drop", Drop())
    define(team, converted(f"{receiver.url}/drop"))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    work(team)
    (run,) = runs(team)
    assert run["status"] == "SUCCEEDED"
    keys = receiver.keys("/drop")
    assert list(keys.values()) == [2]  # two calls, one Idempotency-Key


def test_a_hanging_receiver_is_cut_at_the_deadline(team: Team, receiver: Receiver) -> None:
    receiver.script("/hang", Hang(5))
    define(team, converted(f"{receiver.url}/hang", steps=[post(f"{receiver.url}/hang", timeoutSeconds=0.3)],
                           retry={"maxAttempts": 1}))  # fmt: skip
    update(team, create(team)["id"], {"state": "CONVERTED"})
    started = time.monotonic()
    work(team)
    assert time.monotonic() - started < 3
    detail = team.services.run(get_run, team.id, runs(team)[0]["id"])
    assert detail["status"] == "FAILED" and "deadline" in detail["error"]
    (attempt,) = detail["attempts"]
    assert attempt["durationMs"] < 1500


def test_retry_after_is_honoured(team: Team, receiver: Receiver) -> None:
    receiver.script("/busy", Reply(429, headers={"Retry-After": "1"}))
    define(team, converted(f"{receiver.url}/busy"))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    work(team)
    first, second = receiver.received("/busy")
    assert second.at - first.at >= 0.9
    assert runs(team)[0]["status"] == "SUCCEEDED"


def test_resume_runs_on_from_the_failed_step_and_rerun_from_the_start(team: Team, receiver: Receiver) -> None:
    receiver.script("/second", Reply(500), Reply(500))
    steps = [post(f"{receiver.url}/first", name="first"), post(f"{receiver.url}/second", name="second")]
    define(team, converted("", steps=steps, retry={"maxAttempts": 2, "backoffSeconds": 0.05}))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    work(team)
    (run,) = runs(team)
    assert run["status"] == "FAILED" and run["step"] == 1 and "HTTP 500" in run["error"]
    resumed = team.services.run(resume_run, team.id, run["id"], RunAgain())
    assert resumed["status"] == "PENDING"
    work(team)
    assert team.services.run(get_run, team.id, run["id"])["status"] == "SUCCEEDED"
    assert receiver.count("/first") == 1 and receiver.count("/second") == 3  # the first step not again
    again = team.services.run(rerun, team.id, run["id"], RunAgain())
    assert again["id"] != run["id"] and again["rerunOf"] == run["id"]
    work(team)
    assert team.services.run(get_run, team.id, again["id"])["status"] == "SUCCEEDED"
    assert receiver.count("/first") == 2 and receiver.count("/second") == 4
    with pytest.raises(Conflict):
        team.services.run(resume_run, team.id, run["id"], RunAgain())  # it succeeded


def test_cancel_stops_a_waiting_run_and_a_running_one(team: Team, receiver: Receiver) -> None:
    waiting = [{"name": "pause", "type": "wait", "seconds": 60}, post(f"{receiver.url}/after")]
    define(team, {"trigger": {"type": "manual"}, "steps": waiting}, ref=None)
    hanging = [post(f"{receiver.url}/slow", name="slow"), post(f"{receiver.url}/after", name="after")]
    define(team, {"name": "b", "trigger": {"type": "manual"}, "steps": hanging})
    receiver.script("/slow", Hang(1.5))
    lead = create(team)
    parked = team.services.run(run_automation, team.caller, "lead", lead["id"], "a")
    work(team, settle=False)
    assert team.services.run(get_run, team.id, parked["id"])["status"] == "WAITING"
    assert team.services.run(cancel_run, team.id, parked["id"])["status"] == "CANCELLED"
    running = team.services.run(run_automation, team.caller, "lead", lead["id"], "b")
    worker = threading.Thread(target=work, args=(team,), kwargs={"settle": False})
    worker.start()
    deadline = time.monotonic() + 10
    while receiver.count("/slow") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert team.services.run(get_run, team.id, running["id"])["status"] == "RUNNING"
    assert team.services.run(cancel_run, team.id, running["id"])["status"] == "CANCELLED"
    worker.join(30)
    work(team, settle=False)
    assert team.services.run(get_run, team.id, running["id"])["status"] == "CANCELLED"
    assert receiver.count("/after") == 0  # no step started after either cancel


def test_a_run_keeps_the_version_it_started_with(team: Team, receiver: Receiver) -> None:
    first = define(team, converted(f"{receiver.url}/v1"))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    define(team, converted(f"{receiver.url}/v2", version=1), ref=first["id"])
    work(team)
    (run,) = runs(team)
    assert run["version"] == 1 and receiver.count("/v1") == 1 and receiver.count("/v2") == 0


def test_expressions_are_checked_when_saved(team: Team) -> None:
    with pytest.raises(Invalid) as caught:
        define(team, {"trigger": {"type": "created"}, "condition": "process.data.score >",
                      "steps": [post("https://example.com/x", body="{'a': process.data.score +}")]})  # fmt: skip
    errors = {e.field: e.message for e in caught.value.errors}
    assert "line 1, column" in errors["condition"]
    assert errors["steps[0].body"].startswith("step 1 (post) body: line 1, column 27")


def test_steps_save_processes_and_chains_of_automations_are_bounded(team: Team) -> None:
    bump = {"name": "bump", "type": "update_process", "data": {"score": "process.data.score + 1"}}
    define(team, {"trigger": {"type": "attribute_changed", "attribute": "score"}, "steps": [bump]})
    lead = create(team, {"data": {"score": 0}})
    work(team)
    done = runs(team)
    assert [r["depth"] for r in done] == [0, 1, 2, 3, 4, 5]
    assert [r["status"] for r in done] == ["SUCCEEDED"] * 5 + ["FAILED"]
    assert "5 deep" in done[-1]["error"]
    from tests.integration.bulk import read

    assert read(team, lead["id"])["data"]["score"] == 5


def test_runs_of_one_process_go_in_event_order(team: Team, receiver: Receiver) -> None:
    define(team, {"trigger": {"type": "attribute_changed", "attribute": "score"},
                  "steps": [post(f"{receiver.url}/order", body="{'score': process.data.score, 'run': run.id}")]})  # fmt: skip
    lead = create(team)
    submit(team, [{"id": lead["id"], "data": {"score": n}} for n in range(1, 6)])
    work(team)
    seen = [orjson.loads(r.body)["run"] for r in receiver.received("/order")]
    assert seen == sorted(seen) and len(seen) == 5


def test_a_webhook_step_is_signed(team: Team, receiver: Receiver) -> None:
    define(team, {"trigger": {"type": "created"},
                  "steps": [{"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET}]})  # fmt: skip
    lead = create(team)
    work(team)
    (request,) = receiver.received("/hook")
    payload = standardwebhooks.Webhook(SECRET).verify(request.body, request.headers)
    assert payload["data"]["process"]["id"] == lead["id"] and payload["type"] == "process.created"


def test_calls_to_private_addresses_are_refused(team: Team) -> None:
    define(team, converted("http://10.0.0.1/x", retry={"maxAttempts": 3, "backoffSeconds": 0.05}))
    update(team, create(team)["id"], {"state": "CONVERTED"})
    work(team)
    detail = team.services.run(get_run, team.id, runs(team)[0]["id"])
    assert detail["status"] == "FAILED" and "refused" in detail["error"] and len(detail["attempts"]) == 1


def test_a_timed_trigger_waits_and_a_changed_time_skips_the_old_run(team: Team, receiver: Receiver) -> None:
    define(team, {"trigger": {"type": "next_action_due"}, "steps": [post(f"{receiver.url}/due")]})
    lead = create(team)
    soon = int(time.time() * 1000) + 400
    update(team, lead["id"], {"nextActionAt": soon})
    update(team, lead["id"], {"nextActionAt": soon + 200})
    work(team, settle=False)
    assert {r["status"] for r in runs(team)} == {"WAITING"} and receiver.count() == 0
    time.sleep(0.7)
    work(team)
    assert [r["status"] for r in runs(team)] == ["SKIPPED", "SUCCEEDED"]
    assert receiver.count("/due") == 1


def test_a_batch_over_a_filter_and_a_batch_over_its_failed_runs(team: Team, receiver: Receiver) -> None:
    define(team, {"trigger": {"type": "manual"}, "retry": {"maxAttempts": 1},
                  "steps": [post(f"{receiver.url}/{{{{ string(process.data.score) }}}}")]})  # fmt: skip
    for score in range(10):
        create(team, {"data": {"score": score, "city": "Lyon" if score < 8 else "Paris"}})
    receiver.script("/3", Reply(500))
    receiver.script("/5", Reply(500))
    batch = team.services.run(submit_batch, team.caller, "lead", "a", BatchInput(where={"city": "Lyon"}))
    assert batch["kind"] == "run" and batch["total"] == 8 and batch["counts"]["NOT_STARTED"] == 8
    work(team)
    done = job(team, batch["id"])
    assert done["status"] == "COMPLETED" and done["counts"] | {} == {
        "INVALID": 0,
        "NOT_STARTED": 0,
        "SUCCESS": 6,
        "ERROR": 2,
    }
    failed = entries(team, batch["id"], "ERROR")
    assert sorted(e["processId"] for e in failed) == sorted(
        r["processId"] for r in runs(team, status="FAILED")
    )
    assert all(e["errors"][0]["code"] == "run_failed" for e in failed)
    again = team.services.run(
        submit_batch, team.caller, "lead", "a", BatchInput(failedOf=FailedOf(job=batch["id"]), mode="resume")
    )
    assert again["total"] == 2
    work(team)
    assert job(team, again["id"])["counts"]["SUCCESS"] == 2
    assert {r["status"] for r in runs(team)} == {"SUCCEEDED"} and len(runs(team)) == 8  # resumed, not new
    assert receiver.count("/3") == 2 and receiver.count("/9") == 0


def test_aborting_a_batch_cancels_its_runs(team: Team, receiver: Receiver) -> None:
    define(team, {"trigger": {"type": "manual"}, "steps": [{"name": "pause", "type": "wait", "seconds": 60}]})
    ids = [create(team)["id"] for _ in range(3)]
    batch = team.services.run(submit_batch, team.caller, "lead", "a", BatchInput(ids=ids))
    work(team, settle=False)
    assert {r["status"] for r in runs(team)} == {"WAITING"}
    assert team.services.run(abort_job, team.caller, batch["id"])["status"] == "ABORTED"
    assert {r["status"] for r in runs(team)} == {"CANCELLED"}
    with pytest.raises(Invalid):
        team.services.run(submit_batch, team.caller, "lead", "a", BatchInput(ids=["nope"]))


def test_steps_read_the_record_and_a_refused_save_leaves_no_run(team: Team, receiver: Receiver) -> None:
    body = "{'email': process.record.email, 'lead': process.data.lead_id}"
    define(team, {"trigger": {"type": "created"}, "steps": [post(f"{receiver.url}/crm", body=body)]})
    record = {"data": {"phone_number": "+33612345678", "email": "ada@example.com"}}
    lead = create(team, {"record": record, "data": {"lead_id": "L-1"}})
    with pytest.raises(Conflict):  # the same primary key: the save is refused, so is its run
        create(team, {"record": record, "data": {"lead_id": "L-1"}})
    work(team)
    (run,) = runs(team)
    assert run["processId"] == lead["id"]
    (request,) = receiver.received("/crm")
    assert orjson.loads(request.body) == {"email": "ada@example.com", "lead": "L-1"}


def test_an_automation_runs_at_most_its_concurrency_at_once(team: Team, receiver: Receiver) -> None:
    receiver.script("/limited", *[Hang(0.3)] * 6)
    define(team, converted(f"{receiver.url}/limited", concurrency=2))
    ids = [create(team)["id"] for _ in range(6)]
    submit(team, [{"id": pid, "state": "CONVERTED"} for pid in ids])
    work(team)
    assert {r["status"] for r in runs(team)} == {"SUCCEEDED"} and receiver.count("/limited") == 6
    arrivals = sorted(r.at for r in receiver.received("/limited"))
    together = [sum(1 for other in arrivals if abs(other - at) < 0.15) for at in arrivals]
    assert max(together) == 2  # two at a time, each pair after the one before had its reply
