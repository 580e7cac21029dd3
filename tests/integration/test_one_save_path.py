"""One save path on SQLite and PostgreSQL: a single update and a bulk entry apply one rule set with the same
outcome, and the follow-up rows registered for a change's events are committed and rolled back with it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procession.bootstrap import Services
from procession.domain.clock import now_ms
from procession.domain.errors import Invalid, ProcessionError
from procession.engine.bulk import BULK_CHUNK
from procession.engine.embedded import plan
from procession.engine.tasks import Kinds, run_task
from procession.services.commands import CreateProcess, UpdateProcess
from procession.services.processes import create_in, create_process, update_process
from procession.services.views import FIELD_NAMES, process_view
from procession.store import tables as t
from procession.store.outbox import Saves
from procession.store.tasks import NewTask, Task
from procession.store.uow import UnitOfWork, UnitsOfWork
from tests.conftest import Team
from tests.integration.bulk import drain, entries, read, submit, task_of

# --- a single update and a bulk entry, side by side ------------------------------------------------------

PROCESSES = 3  # per example, in each team; process i starts with key KEY(i), a score and a state
START_STATES = ("NEW", "IN_PROGRESS", "CONVERTED")  # CONVERTED: no move out of it is allowed
KEY = "key"  # ("key", k) in a generated change stands for key k of the example's pool (k == PROCESSES: free)
# codes of values refused before any process is read: a bulk entry with only these is INVALID, not ERROR
SUBMISSION_CODES = {
    "unknown_attribute",
    "read_only",
    "invalid_value",
    "unknown_state",
    "unknown_user",
    "unknown_pod",
}
TIMES = ("completedAt", "cancelledAt", "firstAssignedAt", "lastAssignedAt")  # "now" of each path: set or not


def one_of(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


DATA = st.fixed_dictionaries(
    {},
    optional={
        "lead_id": st.integers(0, PROCESSES).map(lambda k: (KEY, k)) | one_of(None, "  "),
        "score": one_of(7, "42", -3, 1.5, "many", True, None),
        "firstname": one_of("Ted", "  ted   mosby ", "   ", 5, None),
        "phone_num": one_of("+91 77012-14822", 7701214822, "12", None),
        "city": one_of("Pune", "x" * 1001, "a\x00b", None),
        "full_name": one_of("Ted Mosby"),  # derived: read-only
        "colour": one_of("red"),  # no such attribute
    },
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "data": DATA,
        "state": one_of("NEW", "IN_PROGRESS", "CONVERTED", "LOST", "WON"),
        "status": one_of("OPEN", "COMPLETED", "CANCELLED"),
        "assignedTo": one_of("shane.warne", "rahul.dravid", "admin", "ghost", None),
        "nextActionAt": one_of(1618558867539, "1618558867540", "soon", -1, None),
        "belongsTo": one_of("sales", "support", "nowhere", None),
        "isDeleted": st.booleans(),
    },
)
KEY_MOVE = st.builds(lambda k: {"data": {"lead_id": (KEY, k)}}, st.integers(0, PROCESSES))
STATE_MOVE = st.builds(lambda s: {"state": s}, one_of("NEW", "IN_PROGRESS", "CONVERTED", "LOST"))
# (which process, named by its key rather than its id?, sent under "update"?, the fields sent): a third of
# the changes move a key, a third a state, as valid changes of many fields at once are rare
STEP = st.tuples(
    st.integers(0, PROCESSES - 1), st.booleans(), st.booleans(), st.one_of(KEY_MOVE, STATE_MOVE, FIELDS)
)
STEPS = st.lists(STEP, min_size=1, max_size=8)


def with_keys(fields: dict[str, Any], tag: str) -> dict[str, Any]:
    """``fields`` with the key placeholders made this example's keys."""
    data = fields.get("data", {})
    if isinstance(data.get("lead_id"), tuple):
        fields = {**fields, "data": {**data, "lead_id": f"{tag}-{data['lead_id'][1]}"}}
    return fields


def seed(team: Team, tag: str) -> list[str]:
    """The example's processes, alike in both teams."""
    with team.uow() as uow:
        ids = [
            create_in(
                uow,
                team.caller,
                "lead",
                CreateProcess(data={"lead_id": f"{tag}-{i}", "score": i}, state=START_STATES[i]),
            )["id"]
            for i in range(PROCESSES)
        ]
        uow.commit()
    return ids


def codes(error: ProcessionError) -> list[str]:
    return [e.code for e in error.errors]


def key_of(team: Team, process_id: str) -> str | None:
    with team.services.uows.read(team.id) as uow:
        procedure, process = uow.procedures.get("lead"), uow.processes.get(process_id)
        assert procedure is not None and process is not None
        return procedure.key_of(process.data)


def portable(team: Team, process_id: str) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """A process and its events as another team would have them: no ids, team or timestamps of its own;
    users by username, pods by shortId, attributes and states by shortId."""
    with team.services.uows.read(team.id) as uow:
        procedure, process = uow.procedures.get("lead"), uow.processes.get(process_id)
        assert procedure is not None and process is not None
        users = {u["id"]: u["username"] for u in uow.users.list()}
        pods = {p["id"]: p["shortId"] for p in uow.pods.list()}
        events = uow.events.for_process(process_id, limit=1000)
    names = {"assigned_to": users, "assignedTo": users, "firstAssignedTo": users, "createdBy": users}
    names |= {"belongs_to": pods, "belongsTo": pods}
    view = process_view(process, procedure)
    for name in ("id", "team", "procedure", "createdAt", "updatedAt"):
        del view[name]
    for name in TIMES:
        view[name] = view[name] is not None
    for name, ids in names.items():
        if name in view:
            view[name] = ids.get(view[name], view[name])

    def show(name: str, value: Any) -> Any:
        if name == "state":
            return procedure.state_short(value)
        return names[name].get(value, value) if name in names and value is not None else value

    def field(key: str) -> str:
        column, _, attr = key.partition(".")
        return f"{FIELD_NAMES.get(column, column)}.{procedure.by_id[attr].short_id}" if attr else key

    history: list[tuple[str, Any]] = []
    for e in events:
        payload: Any = None  # a creation's snapshot holds its ids: compared as the view above
        if "changes" in e.payload:
            changes = e.payload["changes"].items()
            payload = {field(k): [show(k, old), show(k, new)] for k, (old, new) in changes}
        elif "from" in e.payload:
            name = {"process.state_changed": "state", "process.assigned": "assigned_to"}.get(e.type, "")
            payload = [show(name, e.payload["from"]), show(name, e.payload["to"])]
        history.append((e.type, payload))
    return view, history


def one_by_one(team: Team, ids: list[str], steps: list[tuple], tag: str) -> tuple[list, list]:
    """Each step as a single update: its error codes ([] applied), and the key each named its process by
    (None: by id)."""
    outcomes, named = [], []
    for target, by_key, _, fields in steps:
        key = key_of(team, ids[target]) if by_key else None
        named.append(key)
        ref = ("lead_id", key) if key else (ids[target],)
        cmd = UpdateProcess.model_validate(with_keys(fields, tag))
        try:
            team.services.run(update_process, team.caller, "lead", ref, cmd)
            outcomes.append([])
        except ProcessionError as e:
            outcomes.append(codes(e))
    return outcomes, named


def in_bulk(team: Team, ids: list[str], steps: list[tuple], tag: str, named: list, one_job: bool) -> list:
    """Each step as a bulk entry (in one job, or a job each): its entry's status and error codes."""
    items = []
    for (target, _, nested, fields), key in zip(steps, named, strict=True):
        ident = {"lead_id": key} if key else {"id": ids[target]}
        fields = with_keys(fields, tag)
        items.append({**ident, "update": fields} if nested else {**ident, **fields})
    results = []
    for job_items in [items] if one_job else [[item] for item in items]:
        job_id = submit(team, job_items)["id"]
        drain(team)
        results += [(e["status"], [err["code"] for err in e["errors"]]) for e in entries(team, job_id)]
    return results


def expected(outcome: list[str]) -> tuple[str, list[str]]:
    """A bulk entry's result for a single update's ``outcome``."""
    if not outcome:
        return "SUCCESS", []
    return ("INVALID" if set(outcome) <= SUBMISSION_CODES else "ERROR"), outcome


@pytest.fixture
def three_teams(team_factory: Callable[[], Team]) -> tuple[Team, Team, Team]:
    return team_factory(), team_factory(), team_factory()


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_a_single_update_and_a_bulk_entry_change_a_process_alike(
    three_teams: tuple[Team, Team, Team], steps: list[tuple]
) -> None:
    """Any changes, one update at a time or as bulk entries (a job each, or one job), end alike."""
    single, per_change, one_job = three_teams
    tag = uuid.uuid4().hex[:8]
    ids = {team.id: seed(team, tag) for team in three_teams}
    outcomes, named = one_by_one(single, ids[single.id], steps, tag)
    # compared: each change's error codes (a bulk entry's INVALID if refused at submission, else ERROR), then
    # each process (ids, team and "now" timestamps aside) and its events' types and changes, in order
    # a job's keys name processes as they are when its chunk starts, not as each entry finds them: by id
    for team, names in ((per_change, named), (one_job, [None] * len(steps))):
        results = in_bulk(team, ids[team.id], steps, tag, names, team is one_job)
        for n, (step, outcome, result) in enumerate(zip(steps, outcomes, results, strict=True)):
            assert result == expected(outcome), (
                f"step {n}: {step} ({'one job' if team is one_job else 'a job each'})"
            )
        for pa, pb in zip(ids[single.id], ids[team.id], strict=True):
            view_a, history_a = portable(single, pa)
            view_b, history_b = portable(team, pb)
            assert view_a == view_b
            assert history_a == history_b


@pytest.mark.parametrize("ahead", [False, True], ids=["run", "worked-out-ahead"])
def test_one_bulk_job_swaps_two_keys_through_a_free_one_as_single_updates_would(
    team: Team, ahead: bool
) -> None:
    """In one chunk, a key an entry frees is free for the next entries, and no write meets it twice."""
    tag = uuid.uuid4().hex[:8]
    with team.uow() as uow:
        p, q = (
            create_in(uow, team.caller, "lead", CreateProcess(data={"lead_id": f"{tag}-{n}"}))["id"]
            for n in "pq"
        )
        uow.commit()
    moves = [(p, "free"), (q, "p"), (p, "q"), (q, "p")]  # the last one changes nothing
    job_id = submit(team, [{"id": pid, "data": {"lead_id": f"{tag}-{key}"}} for pid, key in moves])["id"]
    uows, task_id = team.services.uows, task_of(team, job_id, 0)
    afresh: list[Task] = []

    def run(uow: UnitOfWork, task: Task) -> None:
        afresh.append(task)
        BULK_CHUNK.run(uow, task)

    planned = plan(uows, team.services.kinds, task_id)[1] if ahead else None
    assert run_task(uows, Kinds(replace(BULK_CHUNK, run=run)), task_id, planned)
    assert bool(afresh) is not ahead
    assert [e["status"] for e in entries(team, job_id)] == ["SUCCESS"] * 4
    assert (key_of(team, p), key_of(team, q)) == (f"{tag}-q", f"{tag}-p")
    assert [len(portable(team, pid)[1]) for pid in (p, q)] == [3, 2]  # created, then one update per move


# --- follow-up rows: kept exactly when the change is ------------------------------------------------------

FOLLOW_UP = "test.followup"


def follow_up(uow: UnitOfWork, saves: list[Saves]) -> None:
    """A task per process.created or process.updated event, naming its process and the event."""
    parts: dict[str, int] = {}
    tasks = []
    for process_id, event in (r for s in saves for r in s.events):
        if event.type in ("process.created", "process.updated"):
            if process_id not in parts:
                parts[process_id] = len(uow.tasks.of(FOLLOW_UP, process_id))
            tasks.append(NewTask(ref=process_id, part=parts[process_id], args={"event": event.type}))
            parts[process_id] += 1
    uow.tasks.add(FOLLOW_UP, tasks, now=now_ms())


def refuse_atlantis(uow: UnitOfWork, saves: list[Saves]) -> None:
    """Refuses, after the save and after ``follow_up`` wrote its rows, any change that moves to Atlantis."""
    for _, event in (r for s in saves for r in s.events):
        if "Atlantis" in [new for _, new in event.payload.get("changes", {}).values()]:
            raise Invalid.one("refused", "nothing moves to Atlantis")


@pytest.fixture
def hooked(team: Team) -> Iterator[UnitsOfWork]:
    """Units of work on the team's database whose saves write ``follow_up`` rows; the rows go afterwards."""
    yield UnitsOfWork(team.services.engine, follow_ups=(follow_up,))
    with team.services.engine.begin() as conn:
        conn.execute(sa.delete(t.tasks).where(t.tasks.c.team_id == team.id, t.tasks.c.kind == FOLLOW_UP))


def followed(team: Team, process_id: str, conn: sa.Connection | None = None) -> list[str]:
    """The events the follow-up rows of a process name, in order (on ``conn``: as its transaction sees)."""
    c = t.tasks.c
    query = sa.select(c.args).where(c.kind == FOLLOW_UP, c.ref == process_id).order_by(c.part)
    if conn is not None:
        return [args["event"] for args in conn.scalars(query)]
    with team.services.engine.connect() as fresh:
        return [args["event"] for args in fresh.scalars(query)]


def event_types(services: Services, process_id: str) -> list[str]:
    with services.engine.connect() as conn:
        query = sa.select(t.events.c.type).where(t.events.c.process_id == process_id).order_by(t.events.c.id)
        return list(conn.scalars(query))


def test_a_single_create_and_update_commit_their_follow_up_rows(team: Team, hooked: UnitsOfWork) -> None:
    """Create and update commit a follow-up row per event with the change; no change, no row."""
    _, p = create_process(hooked, team.caller, "lead", CreateProcess(data={"city": "Pune"}))
    assert followed(team, p["id"]) == ["process.created"]
    update_process(hooked, team.caller, "lead", (p["id"],), UpdateProcess(state="IN_PROGRESS"))
    update_process(hooked, team.caller, "lead", (p["id"],), UpdateProcess(data={"city": "Pune"}))
    assert followed(team, p["id"]) == ["process.created", "process.updated"]
    plain = team.services.uows  # the wiring's own follow-ups: none
    update_process(plain, team.caller, "lead", (p["id"],), UpdateProcess(data={"city": "Goa"}))
    assert followed(team, p["id"]) == ["process.created", "process.updated"]


def test_a_bulk_chunk_commits_the_follow_up_rows_of_the_entries_it_applied(
    team: Team, hooked: UnitsOfWork
) -> None:
    """A bulk chunk commits follow-up rows for the entries it applied, none for those it refused."""
    with team.uow() as uow:
        p, q, done = (create_in(uow, team.caller, "lead", CreateProcess(state=s))["id"] for s in START_STATES)
        uow.commit()
    items = [{"id": p, "data": {"score": 1}}, {"id": done, "state": "NEW"}, {"id": q, "status": "COMPLETED"}]
    items.append({"id": p, "data": {"score": 2}})
    job_id = submit(team, items)["id"]
    assert run_task(hooked, team.services.kinds, task_of(team, job_id, 0))
    assert [e["status"] for e in entries(team, job_id)] == ["SUCCESS", "ERROR", "SUCCESS", "SUCCESS"]
    assert followed(team, p) == ["process.updated", "process.updated"]
    assert followed(team, q) == ["process.updated"]
    assert followed(team, done) == []


def test_follow_up_rows_roll_back_with_an_update_refused_after_its_save(team: Team) -> None:
    """A change refused after its save (by a later hook) takes its follow-up rows back with it."""
    hooked = UnitsOfWork(team.services.engine, follow_ups=(follow_up, refuse_atlantis))
    try:
        _, p = create_process(hooked, team.caller, "lead", CreateProcess(data={"city": "Pune"}))
        with pytest.raises(Invalid) as refused:
            update_process(hooked, team.caller, "lead", (p["id"],), UpdateProcess(data={"city": "Atlantis"}))
        assert codes(refused.value) == ["refused"]
        job_id = submit(team, [{"id": p["id"], "data": {"city": "Atlantis"}}])["id"]
        task_id = task_of(team, job_id, 0)
        with pytest.raises(Invalid):
            run_task(hooked, team.services.kinds, task_id)
        with team.uow() as uow:
            [task] = uow.tasks.of("bulk.chunk", job_id)
        assert (task["status"], task["attempts"], task["last_error"]) == (
            "PENDING",
            1,
            "Invalid: nothing moves to Atlantis",
        )
        assert [e["status"] for e in entries(team, job_id)] == ["NOT_STARTED"]
        after = read(team, p["id"])
        assert (after["version"], after["data"]["city"]) == (p["version"], "Pune")
        assert followed(team, p["id"]) == ["process.created"]
        assert event_types(team.services, p["id"]) == ["process.created"]
    finally:
        with team.services.engine.begin() as conn:
            conn.execute(sa.delete(t.tasks).where(t.tasks.c.team_id == team.id))


def test_follow_up_rows_roll_back_with_a_unit_of_work_that_raises_before_commit(
    team: Team, hooked: UnitsOfWork
) -> None:
    """Follow-up rows a savepoint wrote go with the enclosing unit of work when it raises before commit."""
    with pytest.raises(RuntimeError, match="before commit"), hooked.write(team.id) as uow:
        with uow.savepoint() as request:
            p = create_in(request, team.caller, "lead", CreateProcess(data={"city": "Pune"}))
            request.commit()
        assert followed(team, p["id"], uow.conn) == ["process.created"]  # written, not yet committed
        raise RuntimeError("before commit")
    assert followed(team, p["id"]) == []
    assert event_types(team.services, p["id"]) == []
    with team.services.uows.read(team.id) as uow:
        assert uow.processes.get(p["id"]) is None
