"""A model of the process API: hypothesis drives a real server over HTTP (each backend) with creates (some
with an ``Idempotency-Key``, some replayed), updates (state moves, status, data, primary-key values, with the
version sent as ``If-Match`` or in the body, current or stale), deletes, restores, reads, filtered lists and
bulk updates, and keeps a plain-Python model of what each should do. After every step the API agrees with the
model (every process of the run, deleted ones included, by one list), no reply is a 5xx, and a process's
version is one more per save that changed it; at the end, each process's events replay to it.

Bounded: ``MAX_EXAMPLES`` runs of at most ``STEPS`` steps (``PROCESSION_TEST_MODEL_EXAMPLES`` for more)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from procession.services.templates import LEAD
from tests.e2e.conftest import Api

LEADS = "/v1/ext/procedure/lead/process"
MAX_EXAMPLES = int(os.environ.get("PROCESSION_TEST_MODEL_EXAMPLES", "12"))
STEPS = 25
STATES = [s["shortId"] for s in LEAD["states"]]
GRAPH: dict[str, list[str]] = LEAD["transitions"]
STATUSES = ["OPEN", "COMPLETED", "CANCELLED"]
CITIES = ["Pune", "Goa", "Osaka"]
FIELDS = ("city", "score", "country")  # the attributes the model writes (besides the key and its mark)

cities = st.sampled_from(CITIES)
changes = st.fixed_dictionaries(
    {},
    optional={
        "city": st.none() | cities,
        "score": st.none() | st.integers(-3, 12),
        "country": st.none() | st.sampled_from(["IN", "JP"]),
        "lead_id": st.integers(0, 3),  # an index into the run's own key values
    },
)
states, statuses = st.none() | st.sampled_from(STATES), st.none() | st.sampled_from(STATUSES)


def can_move(source: str, target: str) -> bool:
    return source == target or target in GRAPH.get(source, [])


@dataclass
class Process:
    """What the model holds of a process."""

    id: str
    data: dict[str, Any]
    state: str
    status: str = "OPEN"
    deleted: bool = False
    version: int = 1

    def changed_by(self, data: dict[str, Any], state: str | None, status: str | None) -> Process:
        """This process after a save of these fields (the version one more if anything changed)."""
        merged = {k: v for k, v in {**self.data, **data}.items() if v is not None}
        after = Process(
            self.id, merged, state or self.state, status or self.status, self.deleted, self.version
        )
        if (after.data, after.state, after.status) != (self.data, self.state, self.status):
            after.version += 1
        return after


@dataclass
class Expected:
    status: int
    after: Process | None = None  # what the process is afterwards, on a 2xx
    code: str | None = None


@dataclass
class Run:
    """What one run of the machine made: its processes, keys and their first answers."""

    mark: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: dict[str, Process] = field(default_factory=dict)
    answers: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(
        default_factory=dict
    )  # key: body, reply

    def key(self, n: int) -> str:
        return f"M-{self.mark}-{n}"

    def holder(self, key: str) -> str | None:
        return next((p.id for p in self.processes.values() if p.data.get("lead_id") == key), None)

    def outcome(self, p: Process, data: dict[str, Any], state: str | None, status: str | None) -> Expected:
        """What a save of these fields on ``p`` should answer (after the version check): refused if ``p`` is
        deleted, if the key it gives is another's, or if the state graph forbids the move."""
        if p.deleted:
            return Expected(404, code="deleted")
        key = data.get("lead_id")
        if key is not None and self.holder(key) not in (None, p.id):
            return Expected(409, code="duplicate_primary_key")
        if state is not None and not can_move(p.state, state):
            return Expected(422, code="transition_not_allowed")
        return Expected(200, p.changed_by(data, state, status))


def send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    r = http.request(method, url, **kwargs)
    assert r.status_code < 500, f"{method} {url} {kwargs}: {r.status_code} {r.text}"
    return r


def check(r: httpx.Response, expected: Expected) -> dict[str, Any] | None:
    assert r.status_code == expected.status, r.text
    if expected.code is not None:
        assert r.json()["_errors"][0]["code"] == expected.code, r.text
    return r.json()["_data"] if r.status_code < 300 else None


def agrees(got: dict[str, Any], p: Process) -> None:
    seen = {k: got["data"].get(k) for k in (*FIELDS, "lead_id", "source") if k in got["data"]}
    assert (seen, got["state"], got["status"], got["isDeleted"], got["version"]) == (
        p.data,
        p.state,
        p.status,
        p.deleted,
        p.version,
    ), got


def replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A process rebuilt from its events: the created one's snapshot, then every update's changes."""
    assert events[0]["type"] == "process.created"
    process = dict(events[0]["process"])
    process["data"] = dict(process["data"])
    for event in events[1:]:
        if event["type"] != "process.updated":
            continue
        for name, change in event["changes"].items():
            if name.startswith("data."):
                process["data"][name.removeprefix("data.")] = change["new"]
            elif not name.startswith("derivedData."):
                process[name] = change["new"]
        process["version"] += 1
    process["data"] = {k: v for k, v in process["data"].items() if v is not None}
    return process


class ProcessApi(RuleBasedStateMachine):
    """The API against the model (``Run``); ``api`` is set on a subclass per test."""

    api: Api
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.run = Run()
        self.http = self.api.http

    def url(self, pid: str) -> str:
        return f"{LEADS}/{pid}"

    def create_body(self, data: dict[str, Any], state: str | None, status: str | None) -> dict[str, Any]:
        data = {k: (self.run.key(v) if k == "lead_id" else v) for k, v in data.items() if v is not None}
        body: dict[str, Any] = {"data": {**data, "source": self.run.mark}}
        return body | ({"state": state} if state else {}) | ({"status": status} if status else {})

    @initialize(target=ids)
    def first(self) -> str:
        return self.create_ok({}, None, None, None)

    def create_ok(self, data: dict[str, Any], state: str | None, status: str | None, key: str | None) -> str:
        body = self.create_body(data, state, status)
        headers = {"Idempotency-Key": key} if key else {}
        wanted = body["data"].get("lead_id")
        if wanted is not None and self.run.holder(wanted) is not None:
            check(send(self.http, "POST", LEADS, json=body, headers=headers), Expected(409))
            return self.create_ok({k: v for k, v in data.items() if k != "lead_id"}, state, status, None)
        r = send(self.http, "POST", LEADS, json=body, headers=headers)
        got = check(r, Expected(201))
        assert got is not None
        assert got["data"]["lead_id"] and self.run.holder(got["data"]["lead_id"]) is None
        p = Process(got["id"], {k: v for k, v in body["data"].items()}, state or "NEW", status or "OPEN")
        p.data["lead_id"] = got["data"]["lead_id"]
        self.run.processes[p.id] = p
        agrees(got, p)
        if key:
            self.run.answers[key] = (body, got)
        return p.id

    @rule(target=ids, data=changes, state=states, status=statuses, keyed=st.booleans())
    def create(self, data: dict[str, Any], state: str | None, status: str | None, keyed: bool) -> str:
        return self.create_ok(data, state, status, uuid.uuid4().hex if keyed else None)

    @precondition(lambda self: self.run.answers)
    @rule(pick=st.integers(0, 100), same=st.booleans())
    def replay_a_key(self, pick: int, same: bool) -> None:
        """The same key and body: the first answer, no new process; another body: a 409."""
        key = sorted(self.run.answers)[pick % len(self.run.answers)]
        body, first = self.run.answers[key]
        sent = body if same else {**body, "data": {**body["data"], "city": "elsewhere"}}
        r = send(self.http, "POST", LEADS, json=sent, headers={"Idempotency-Key": key})
        if same:
            assert check(r, Expected(201)) == first
        else:
            check(r, Expected(409))

    @rule(
        pid=ids,
        data=changes,
        state=states,
        status=statuses,
        how=st.sampled_from(["none", "header", "body", "stale header", "stale body"]),
    )
    def update(self, pid: str, data: dict[str, Any], state: str | None, status: str | None, how: str) -> None:
        p = self.run.processes[pid]
        data = {k: (self.run.key(v) if k == "lead_id" else v) for k, v in data.items()}
        body: dict[str, Any] = {"data": data} | ({"state": state} if state else {})
        body |= {"status": status} if status else {}
        version = p.version + (1 if how.startswith("stale") else 0)
        headers = {"If-Match": f'"{version}"'} if how.endswith("header") else {}
        if how.endswith("body"):
            body["version"] = version
        if how.startswith("stale"):
            expected = Expected(409, code="stale_version")
        else:
            expected = self.run.outcome(p, data, state, status)
        got = check(send(self.http, "PUT", self.url(pid), json=body, headers=headers), expected)
        if got is not None and expected.after is not None:
            self.run.processes[pid] = expected.after
            agrees(got, expected.after)

    @rule(pid=ids)
    def delete(self, pid: str) -> None:
        p = self.run.processes[pid]
        got = check(send(self.http, "DELETE", self.url(pid)), Expected(404) if p.deleted else Expected(200))
        if got is not None:
            p.deleted, p.version = True, p.version + 1
            agrees(got, p)

    @rule(pid=ids, city=st.none() | cities)
    def restore(self, pid: str, city: str | None) -> None:
        """``isDeleted: false``, with a change or without: one save."""
        p = self.run.processes[pid]
        body: dict[str, Any] = {"isDeleted": False} | ({"data": {"city": city}} if city else {})
        got = check(send(self.http, "PUT", self.url(pid), json=body), Expected(200))
        assert got is not None
        after = p.changed_by({"city": city} if city else {}, None, None)
        if p.deleted:
            after.deleted, after.version = False, p.version + 1
        self.run.processes[pid] = after
        agrees(got, after)

    @rule(pid=ids, by_key=st.booleans())
    def read(self, pid: str, by_key: bool) -> None:
        p = self.run.processes[pid]
        url = f"{LEADS}/lead_id/{p.data['lead_id']}" if by_key else self.url(pid)
        got = check(send(self.http, "GET", url), Expected(404) if p.deleted else Expected(200))
        if got is not None:
            agrees(got, p)

    @rule(
        where=st.one_of(
            st.just({}),
            cities.map(lambda c: {"city": c}),
            st.lists(cities, min_size=1, max_size=2).map(lambda cs: {"city": cs}),
            st.integers(-3, 12).map(lambda n: {"score": {">=": n}}),
            st.sampled_from(STATES).map(lambda s: {"state": s}),
            st.tuples(st.sampled_from(STATUSES), cities).map(
                lambda t: {"or": [{"status": t[0]}, {"city": {"!=": t[1]}}]}
            ),
        ),
        deleted=st.booleans(),
    )
    def list_processes(self, where: dict[str, Any], deleted: bool) -> None:
        body = {"where": {"source": self.run.mark, **where}, "includeDeleted": deleted, "limit": 100}
        got = check(send(self.http, "POST", f"{LEADS}/list", json=body), Expected(200))
        assert got is not None
        wanted = {
            p.id for p in self.run.processes.values() if (deleted or not p.deleted) and matches(p, where)
        }
        assert {g["id"] for g in got} == wanted, where

    @rule(entries=st.lists(st.tuples(st.integers(0, 100), changes, states, statuses), min_size=1, max_size=6))
    def bulk_update(self, entries: list[tuple[int, dict[str, Any], str | None, str | None]]) -> None:
        """A bulk update of processes of the run, in order: each entry's outcome as a single update's."""
        ids, items, counts = sorted(self.run.processes), [], {"SUCCESS": 0, "ERROR": 0}
        for pick, data, state, status in entries:
            p = self.run.processes[ids[pick % len(ids)]]
            data = {k: (self.run.key(v) if k == "lead_id" else v) for k, v in data.items()}
            items.append({"id": p.id, "data": data} | ({"state": state} if state else {}))
            items[-1] |= {"status": status} if status else {}
            expected = self.run.outcome(p, data, state, status)
            counts["SUCCESS" if expected.after else "ERROR"] += 1
            if expected.after is not None:
                self.run.processes[p.id] = expected.after
        r = send(self.http, "PATCH", LEADS, json={"processes": items})
        job = check(r, Expected(202))
        assert job is not None
        done = finished(self.http, job["id"])
        assert done["_data"]["status"] == "COMPLETED", done
        assert {k: done["_meta"]["counts"][k] for k in counts} == counts, (items, done)

    @invariant()
    def agrees_with_the_model(self) -> None:
        body = {"where": {"source": self.run.mark}, "includeDeleted": True, "limit": 100}
        got = check(send(self.http, "POST", f"{LEADS}/list", json=body), Expected(200))
        assert got is not None
        assert {g["id"] for g in got} == set(self.run.processes)
        for g in got:
            agrees(g, self.run.processes[g["id"]])

    def teardown(self) -> None:
        """Each process's events, replayed, make the process as it is."""
        for pid, p in self.run.processes.items():
            events = history(self.http, self.url(pid))
            rebuilt = replay(events)
            assert (rebuilt["data"], rebuilt["state"], rebuilt["status"], rebuilt["version"]) == (
                p.data,
                p.state,
                p.status,
                p.version,
            ), events
            assert rebuilt["isDeleted"] is p.deleted


def matches(p: Process, where: dict[str, Any]) -> bool:
    """The model's reading of the few ``where`` clauses the machine sends."""
    for name, cond in where.items():
        if name == "or":
            if not any(matches(p, c) for c in cond):
                return False
            continue
        value = {"state": p.state, "status": p.status}.get(name, p.data.get(name))
        if isinstance(cond, list):
            ok = value in cond
        elif isinstance(cond, dict):
            ((op, operand),) = cond.items()
            # ``!=`` is "is distinct from": a process without the value is not equal to it
            ok = value != operand if op == "!=" else value is not None and value >= operand
        else:
            ok = value == cond
        if not ok:
            return False
    return True


def history(http: httpx.Client, url: str) -> list[dict[str, Any]]:
    """Every event of the process at ``url``, page after page."""
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = send(http, "GET", f"{url}/events", params={"after": after, "limit": 100}).json()
        events += page["_data"]
        after = page["_meta"].get("nextAfter")
    return events


def finished(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = send(http, "GET", f"/v1/ext/background-job/{job_id}").json()
        if job["_data"]["status"] in ("COMPLETED", "FAILED", "ABORTED"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        time.sleep(0.02)


def test_the_api_agrees_with_a_model_of_it(api: Api) -> None:
    machine = type("Machine", (ProcessApi,), {"api": api})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
