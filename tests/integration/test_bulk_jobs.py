"""Bulk jobs on SQLite and PostgreSQL: submission, per-entry results, chunk application, abort, idempotency."""

from __future__ import annotations

import gc
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa

from procession.api.deps import request_hash
from procession.bootstrap import Services
from procession.domain.errors import Invalid
from procession.domain.process import Event
from procession.engine import chunks
from procession.engine.chunks import commit_written, plan_chunk, run_chunk, run_pending, write_planned
from procession.engine.embedded import SWITCH_INTERVAL_S, EmbeddedRunner
from procession.services import bulk
from procession.services.bulk import write_updates
from procession.services.commands import BulkProcesses, CreateProcess, UpdateProcess
from procession.services.idempotency import run_once
from procession.services.jobs import (
    CHUNK_SIZE,
    ENTRY_BATCH,
    MAX_ITEMS,
    abort_job,
    job_entries,
    job_view,
    submit_job,
)
from procession.services.processes import create_process, load_procedure, update_process
from procession.services.reads import get_process
from procession.store import batch
from procession.store import tables as t
from procession.store.db import Checkpointer
from procession.store.jobs import Queue
from procession.store.uow import UnitOfWork
from tests.conftest import Team, make_team, redefine


def create(team: Team, body: dict) -> dict:
    with team.uow() as uow:
        out = create_process(uow, team.caller, "lead", CreateProcess.model_validate(body))
        uow.commit()
    return out


def submit(team: Team, items: list, kind: str = "update") -> dict:
    with team.uow() as uow:
        job = submit_job(uow, team.caller, "lead", items, kind=kind)
        uow.commit()
    return job


def drain(team: Team) -> int:
    """Apply this team's pending chunks, as a worker would; the number applied here. (A server sharing the
    database may apply some too: claims make sure each chunk is applied once.)"""
    applied = 0
    with team.services.engine.connect() as conn:
        pending = conn.execute(
            sa.select(t.job_chunks.c.job_id, t.job_chunks.c.chunk_no)
            .join(t.jobs, t.jobs.c.id == t.job_chunks.c.job_id)
            .where(t.jobs.c.team_id == team.id, t.job_chunks.c.status == "PENDING")
            .order_by(t.jobs.c.created_at, t.job_chunks.c.chunk_no)
        ).all()
    for job_id, chunk_no in pending:
        applied += run_chunk(team.services.engine, job_id, chunk_no)
    for job_id in {j for j, _ in pending}:  # chunks another runner claimed finish there
        deadline = time.monotonic() + 60
        while job(team, job_id)["status"] in ("NOT_STARTED", "IN_PROGRESS"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return applied


def job(team: Team, job_id: str) -> dict:
    with team.uow() as uow:
        return job_view(uow, job_id)


def entries(team: Team, job_id: str, status: str | None = None) -> list[dict]:
    with team.uow() as uow:
        return job_entries(uow, job_id, status=status, after=-1, limit=1000)[0]


def read(team: Team, process_id: str) -> dict:
    with team.uow() as uow:
        return get_process(uow, "lead", (process_id,))


def test_both_shapes_both_identifiers_and_every_field(team: Team) -> None:
    a, b = create(team, {"data": {"city": "Pune"}}), create(team, {"data": {"lead_id": "LEAD-910"}})
    j = submit(
        team,
        [
            {
                "id": a["id"],
                "state": "IN_PROGRESS",
                "status": "OPEN",
                "assignedTo": "shane.warne",
                "nextActionAt": "1616253910842",
                "data": {"first_name": "shane", "last_name": "warne"},
            },
            {
                "lead_id": "LEAD-910",
                "update": {
                    "data": {"score": "105", "city": "Goa"},
                    "state": "IN_PROGRESS",
                    "status": "CANCELLED",
                },
            },
        ],
    )
    assert j["status"] == "NOT_STARTED" and j["counts"]["NOT_STARTED"] == 2
    drain(team)
    done = job(team, j["id"])
    assert done["status"] == "COMPLETED" and done["counts"]["SUCCESS"] == 2 and done["finishedAt"]
    pa, pb = read(team, a["id"]), read(team, b["id"])
    assert pa["data"] == {
        "city": "Pune",
        "first_name": "shane",
        "last_name": "warne",
        "lead_id": pa["data"]["lead_id"],
    }
    assert (pa["state"], pa["nextActionAt"], pa["assignedTo"] is not None) == (
        "IN_PROGRESS",
        1616253910842,
        True,
    )
    assert pb["data"]["score"] == 105 and pb["status"] == "CANCELLED" and pb["cancelledAt"]
    assert [e["processId"] for e in entries(team, j["id"])] == [a["id"], b["id"]]


def test_a_primary_key_changed_in_bulk_is_found_by_its_new_key_only(team: Team) -> None:
    a, b = create(team, {"data": {"lead_id": "OLD-1"}}), create(team, {})
    submit(team, [{"lead_id": "OLD-1", "data": {"lead_id": "NEW-1"}}, {"id": b["id"], "data": {"score": 3}}])
    drain(team)
    with team.uow() as uow:
        lead = uow.procedures.get("lead")
        assert lead is not None
        assert uow.processes.id_by_pk(lead.id, "NEW-1") == a["id"]
        assert uow.processes.id_by_pk(lead.id, "OLD-1") is None
        assert uow.processes.id_by_pk(lead.id, b["data"]["lead_id"]) == b["id"]  # its key left as it was


def test_a_key_names_a_process_of_the_job_s_procedure_only(team: Team) -> None:
    last = (
        "ffffffff-ffff-ffff-ffff-ffffffffffff"  # the ticket's row comes after the lead's (PostgreSQL: by id)
    )
    with team.uow() as uow:  # a ticket whose key is also a lead's key
        ticket = create_process(uow, team.caller, "ticket", CreateProcess(data={"ticket_id": "SAME-1"}))
        uow.conn.execute(sa.update(t.processes).where(t.processes.c.id == ticket["id"]).values(id=last))
        uow.commit()
    lead = create(team, {"data": {"lead_id": "SAME-1"}})
    j = submit(team, [{"id": last, "data": {"score": 1}}, {"lead_id": "SAME-1", "data": {"score": 2}}])
    drain(team)
    results = entries(team, j["id"])
    assert [(e["status"], e["processId"]) for e in results] == [("ERROR", None), ("SUCCESS", lead["id"])]
    assert read(team, lead["id"])["data"]["score"] == 2


def test_delete_and_restore_in_bulk(team: Team) -> None:
    p = create(team, {})
    submit(team, [{"id": p["id"], "isDeleted": True}])
    drain(team)
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}, {"id": p["id"], "update": {"isDeleted": False}}])
    drain(team)
    results = entries(team, j["id"])
    assert [e["status"] for e in results] == ["ERROR", "SUCCESS"]
    assert results[0]["errors"][0]["code"] == "deleted"
    assert read(team, p["id"])["isDeleted"] is False


def test_invalid_and_error_entries_never_fail_the_others(team: Team) -> None:
    good, done = create(team, {}), create(team, {"state": "CONVERTED"})
    other = create(team, {"data": {"lead_id": "OTHER"}})
    items = [
        {"status": "COMPLETED"},  # 0 no identifier: INVALID
        {"id": good["id"], "data": {"score": "many"}},  # 1 bad value: INVALID
        {"id": good["id"], "data": {"nope": 1}},  # 2 unknown attribute: INVALID
        {"id": good["id"], "colour": "red"},  # 3 unknown field: INVALID
        {"id": good["id"], "lead_id": "OTHER"},  # 4 identifiers disagree: INVALID
        {"id": good["id"], "data": {"score": 1}, "update": {"state": "NEW"}},  # 5 both shapes: INVALID
        "not an object",  # 6 INVALID
        {"id": "00000000-0000-0000-0000-000000000000", "data": {"score": 1}},  # 7 not found: ERROR
        {"id": done["id"], "state": "NEW"},  # 8 transition: ERROR
        {"lead_id": "NOPE-1", "data": {"score": 1}},  # 9 not found by key: ERROR
        {"id": good["id"], "data": {"score": 7}},  # 10 SUCCESS
        {"lead_id": "OTHER", "data": {"score": 8}},  # 11 SUCCESS
    ]
    j = submit(team, items)
    assert j["counts"] == {"INVALID": 7, "NOT_STARTED": 5, "SUCCESS": 0, "ERROR": 0}
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "COMPLETED"
    assert final["counts"] == {"INVALID": 7, "NOT_STARTED": 0, "SUCCESS": 2, "ERROR": 3}
    by_index = {e["index"]: e for e in entries(team, j["id"])}
    assert [by_index[i]["status"] for i in range(12)] == ["INVALID"] * 7 + ["ERROR"] * 3 + ["SUCCESS"] * 2
    assert by_index[8]["errors"][0]["code"] == "transition_not_allowed"
    assert by_index[0]["errors"][0]["code"] == "missing_identifier"
    assert by_index[1]["errors"][0]["field"] == "data.score"
    assert entries(team, j["id"], "ERROR")[0]["index"] == 7
    assert read(team, good["id"])["data"]["score"] == 7 and read(team, other["id"])["data"]["score"] == 8


def test_chunks_hold_a_thousand_valid_entries_each_with_invalid_ones_between(team: Team) -> None:
    """Chunk bounds count valid entries only, across the batches submission stores in: every chunk covers
    exactly CHUNK_SIZE of them (the last the rest), and the chunks neither overlap nor leave one out."""
    p = create(team, {})
    items = [
        {"status": "COMPLETED"} if i % 4 == 3 else {"id": p["id"], "data": {"score": i}} for i in range(5500)
    ]
    j = submit(team, items)
    c, e = t.job_chunks.c, t.job_entries.c
    with team.services.engine.connect() as conn:
        bounds = conn.execute(
            sa.select(c.first_idx, c.end_idx).where(c.job_id == j["id"]).order_by(c.chunk_no)
        ).all()
        valid = [
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.job_entries)
                .where(e.job_id == j["id"], e.status == "NOT_STARTED", e.idx >= first, e.idx < end)
            )
            for first, end in bounds
        ]
    assert valid == [CHUNK_SIZE] * 4 + [4125 - 4 * CHUNK_SIZE]
    assert bounds[0][0] == 0 and bounds[-1][1] == 5499 and all(a[1] <= b[0] for a, b in pairwise(bounds))
    drain(team)
    assert job(team, j["id"])["counts"] == {"INVALID": 1375, "NOT_STARTED": 0, "SUCCESS": 4125, "ERROR": 0}
    assert read(team, p["id"])["data"]["score"] == 5498


def test_bulk_updates_write_the_same_events_as_single_updates(team: Team) -> None:
    p = create(team, {})
    submit(
        team, [{"id": p["id"], "state": "IN_PROGRESS", "assignedTo": "shane.warne", "data": {"city": "X"}}]
    )
    drain(team)
    with team.uow() as uow:
        types = [e.type for e in uow.events.for_process(p["id"])]
    assert types == ["process.created", "process.updated", "process.state_changed", "process.assigned"]


def test_abort_leaves_unapplied_entries_not_started(team: Team) -> None:
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": i}} for i in range(2500)])
    assert run_chunk(team.services.engine, j["id"], 0)
    with team.uow() as uow:
        assert abort_job(uow, j["id"])["status"] == "ABORTED"
    assert run_chunk(
        team.services.engine, j["id"], 1
    )  # a chunk after the abort: its entries stay as they are
    assert job(team, j["id"])["finishedAt"] is not None  # the job finished when it was aborted
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "ABORTED"
    assert final["counts"]["SUCCESS"] == 1000 and final["counts"]["NOT_STARTED"] == 1500
    assert read(team, p["id"])["data"]["score"] == 999


def test_bulk_create_has_create_semantics(team: Team) -> None:
    create(team, {"data": {"lead_id": "TAKEN"}})
    j = submit(
        team,
        [
            {
                "data": {"firstname": "Ted"},
                "record": {"data": {"phone_number": "7701214822"}},
                "state": "CONVERTED",
            },
            {"data": {"lead_id": "TAKEN"}},
            {"data": {"score": "x"}},
            {"assignedTo": "shane.warne"},
        ],
        kind="create",
    )
    assert j["counts"]["INVALID"] == 1
    drain(team)
    results = entries(team, j["id"])
    assert [e["status"] for e in results] == ["SUCCESS", "ERROR", "INVALID", "SUCCESS"]
    assert results[1]["errors"][0]["code"] == "duplicate_primary_key"
    ted = read(team, results[0]["processId"])
    assert ted["state"] == "CONVERTED" and ted["record"] is not None


def test_idempotent_resubmission_returns_the_same_job(team: Team) -> None:
    p = create(team, {})
    body = BulkProcesses(processes=[{"id": p["id"], "data": {"score": 1}}])

    def send(b: BulkProcesses) -> tuple[int, dict]:
        return run_once(
            team.uow,
            "bulk-1",
            request_hash("bulk-update lead", b),
            202,
            lambda uow: submit_job(uow, team.caller, "lead", b.processes, kind="update"),
        )

    first, again = send(body), send(body)
    assert first[1]["id"] == again[1]["id"]
    with team.uow() as uow:  # the retry stored no second job
        assert (
            uow.conn.scalar(sa.select(sa.func.count()).select_from(t.jobs).where(t.jobs.c.team_id == team.id))
            == 1
        )


def test_a_chunk_is_applied_once(team: Team) -> None:
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}])
    first = run_chunk(team.services.engine, j["id"], 0)
    assert run_chunk(team.services.engine, j["id"], 0) is False
    assert first or job(team, j["id"])["status"] in ("IN_PROGRESS", "COMPLETED")  # or a server took it
    drain(team)
    assert job(team, j["id"])["counts"]["SUCCESS"] == 1
    with team.uow() as uow:
        assert len(uow.events.for_process(p["id"])) == 2


def test_a_hundred_thousand_entries(team: Team) -> None:
    keys = [create(team, {})["data"]["lead_id"] for _ in range(50)]
    items = [
        {
            "lead_id": keys[i % 50],
            "data": {"score": i, "city": "Goa", "source": "bulk"},
            **({"state": "IN_PROGRESS"} if i < 50 else {}),
        }
        for i in range(100_000)
    ]
    j = submit(team, items)
    assert j["counts"]["NOT_STARTED"] == 100_000
    drain(team)
    final = job(team, j["id"])
    assert final["status"] == "COMPLETED" and final["counts"]["SUCCESS"] == 100_000
    with team.uow() as uow:
        p = uow.processes.get(uow.processes.id_by_pk(uow.procedures.get("lead").id, keys[0]))  # type: ignore[union-attr]
    assert (
        p is not None and p.version == 1 + 2000 - 0
    )  # 2,000 entries touched this one; each changed the score


@pytest.mark.parametrize("kind", ["update", "create"])
def test_unknown_procedure_is_not_found(team: Team, kind: str) -> None:
    from procession.domain.errors import NotFound

    with pytest.raises(NotFound), team.uow() as uow:
        submit_job(uow, team.caller, "nope", [{}], kind=kind)


def test_a_chunk_that_keeps_failing_ends_as_errors_and_a_failed_job(team: Team, monkeypatch) -> None:
    import procession.engine.chunks as chunks

    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}, {"id": p["id"], "data": {"score": 2}}])

    def broken(*_: object) -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(chunks, "apply_chunk", broken)
    for attempt in range(chunks.MAX_ATTEMPTS):
        assert job(team, j["id"])["status"] == "NOT_STARTED", attempt
        with pytest.raises(RuntimeError):
            run_chunk(team.services.engine, j["id"], 0)
    final = job(team, j["id"])
    assert final["status"] == "FAILED" and final["counts"]["ERROR"] == 2
    assert {e["errors"][0]["code"] for e in entries(team, j["id"])} == {"internal"}
    assert read(team, p["id"])["version"] == 1  # nothing was applied


def waits_for(team: Team, job_id: str) -> list[int | None]:
    """Each chunk's ``after_chunk``: the earlier chunk it waits for."""
    c = t.job_chunks.c
    with team.services.engine.connect() as conn:
        return list(conn.scalars(sa.select(c.after_chunk).where(c.job_id == job_id).order_by(c.chunk_no)))


def test_chunks_naming_the_same_process_apply_in_order_and_the_others_at_once(team: Team) -> None:
    """A chunk waits for every chunk up to the latest earlier one naming one of its processes (by id, or one
    by id and one by primary key); a chunk naming other processes runs at once. Bulk creates run one chunk
    at a time."""
    a, b, c = (create(team, {}) for _ in range(3))

    def items(process: dict, n: int, by_key: bool = False) -> list[dict]:
        ident = {"lead_id": process["data"]["lead_id"]} if by_key else {"id": process["id"]}
        return [{**ident, "data": {"score": i}} for i in range(n)]

    # chunk 0: a; chunk 1: b; chunk 2: a (by key) -> waits for 0; chunk 3: c, b -> waits for 1
    j = submit(
        team, items(a, 1000) + items(b, 1000) + items(a, 1000, by_key=True) + items(c, 999) + items(b, 1)
    )
    assert waits_for(team, j["id"]) == [None, None, 0, 1]
    creates = submit(team, [{}] * 2001, kind="create")
    assert waits_for(team, creates["id"]) == [None, 0, 1]

    engine = team.services.engine
    assert run_chunk(engine, j["id"], 2) is False  # chunk 0 first
    assert run_chunk(engine, j["id"], 1) is True  # independent of chunk 0
    assert run_chunk(engine, j["id"], 3) is False  # every chunk up to 1 first: 0 is pending
    assert run_chunk(engine, j["id"], 0) is True
    assert run_chunk(engine, j["id"], 3) is True
    assert run_chunk(engine, j["id"], 2) is True
    assert job(team, j["id"])["counts"]["SUCCESS"] == 4000
    assert read(team, a["id"])["data"]["score"] == 999  # the last entry naming it, applied last
    drain(team)


def test_items_may_stream_in_and_too_many_store_nothing(team: Team) -> None:
    """Submission takes the items as a one-time stream, a batch at a time; past MAX_ITEMS the whole
    submission is refused, with nothing stored."""
    p = create(team, {})
    j = submit(team, ({"id": p["id"], "data": {"score": i}} for i in range(3)))  # type: ignore[arg-type]
    assert (j["total"], j["counts"]["NOT_STARTED"]) == (3, 3)
    with pytest.raises(Invalid) as refused:
        submit(team, ({"id": p["id"]} for _ in range(MAX_ITEMS + 1)))  # type: ignore[arg-type]
    assert refused.value.errors[0].code == "too_many"
    assert gc.isenabled()  # paused while the items are taken, and resumed however submission ends
    with pytest.raises(Invalid):
        submit(team, iter([]))  # type: ignore[arg-type]
    with team.services.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(t.jobs).where(t.jobs.c.team_id == team.id)
        assert conn.scalar(count) == 1


def test_jobs_of_a_procedure_apply_in_the_order_they_were_submitted(team: Team) -> None:
    """A later job of the same procedure waits until the earlier one has nothing pending, and is then
    among the chunks its last chunk unblocks; a job that changes primary keys runs its chunks in turn."""
    a, b = create(team, {}), create(team, {})
    first = submit(team, [{"id": a["id"], "data": {"score": 1}}])
    second = submit(team, [{"id": b["id"], "data": {"score": 2}}])
    engine = team.services.engine
    assert run_chunk(engine, second["id"], 0) is False  # the first job is pending
    with team.services.engine.begin() as conn:
        assert Queue(conn).unblocked_by(first["id"], 0) == []  # not done yet
    assert run_chunk(engine, first["id"], 0) is True
    with team.services.engine.begin() as conn:
        assert Queue(conn).unblocked_by(first["id"], 0) == [(second["id"], 0)]
    assert run_chunk(engine, second["id"], 0) is True

    c = create(team, {})  # by their names alone the two chunks share nothing; but a key moves
    renames = submit(
        team,
        [{"id": a["id"], "data": {"lead_id": "RENAMED-1"}}] + [{"id": b["id"]}] * 999 + [{"id": c["id"]}],
    )
    assert waits_for(team, renames["id"]) == [None, 0]
    drain(team)


def ahead(team: Team, items: list[dict]) -> tuple[str, Any]:
    """A one-chunk job, worked out ahead as the embedded runner does while the chunk before it commits."""
    j = submit(team, items)
    return j["id"], plan_chunk(team.services.engine, j["id"], 0)


def as_planned(team: Team, job_id: str, planned: Any) -> bool:
    """Whether the chunk was written as worked out (False: applied afresh instead)."""
    written = write_planned(team.services.engine, (job_id, 0), planned)
    return written is not None and commit_written(team.services.engine, written)


def test_a_chunk_worked_out_ahead_is_written_only_if_what_it_read_is_unchanged(team: Team) -> None:
    """Written as worked out when nothing it read changed; applied afresh, under the write lock, when one
    of its processes was updated, its procedure was changed, a key it gives was taken or its job was
    aborted meanwhile: no update is lost, and every entry gets the result the fresh state gives."""
    a, b = create(team, {}), create(team, {})

    job_id, planned = ahead(team, [{"id": a["id"], "data": {"score": 1}}])
    assert as_planned(team, job_id, planned)
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1, 2)

    job_id, planned = ahead(team, [{"id": a["id"], "data": {"score": 2}}])
    with team.uow() as uow:  # an update over the API meanwhile: the worked-out data lacks its city
        update_process(uow, team.caller, "lead", (a["id"],), UpdateProcess(data={"city": "Paris"}))
    assert not as_planned(team, job_id, planned)
    after = read(team, a["id"])
    assert (after["data"]["score"], after["data"]["city"], after["version"]) == (2, "Paris", 4)

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"lead_id": "TAKEN-1"}}])
    create(team, {"data": {"lead_id": "TAKEN-1"}})
    assert not as_planned(team, job_id, planned)
    assert [e["errors"][0]["code"] for e in entries(team, job_id)] == ["duplicate_primary_key"]

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"score": 3}}])
    redefine(team, "lead", label="Leads, renamed")
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["SUCCESS"] == 1 and read(team, b["id"])["data"]["score"] == 3

    # entries refused on what the plan read: a key that names no process yet, a deleted process
    gone = create(team, {})
    with team.uow() as uow:
        update_process(uow, team.caller, "lead", (gone["id"],), UpdateProcess(isDeleted=True))
    job_id, planned = ahead(
        team, [{"lead_id": "LATE-1", "data": {"score": 5}}, {"id": gone["id"], "data": {"score": 6}}]
    )
    assert [r["b_status"] for r in planned.plan.results] == ["ERROR", "ERROR"]
    create(team, {"data": {"lead_id": "LATE-1"}})
    with team.uow() as uow:
        update_process(uow, team.caller, "lead", (gone["id"],), UpdateProcess(isDeleted=False))
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["SUCCESS"] == 2 and read(team, gone["id"])["data"]["score"] == 6

    job_id, planned = ahead(team, [{"id": b["id"], "data": {"score": 4}}])
    with team.uow() as uow:
        abort_job(uow, job_id)
    assert not as_planned(team, job_id, planned)
    assert job(team, job_id)["counts"]["NOT_STARTED"] == 1 and read(team, b["id"])["data"]["score"] == 3


def test_the_embedded_runner_applies_chunks_in_turn_while_one_commits(team: Team) -> None:
    """Chunks naming the same process wait for the one in flight to commit; the others are worked out
    while it does. Every entry is applied once, in the order sent; a stopped runner starts nothing."""
    a, b, c = create(team, {}), create(team, {}), create(team, {})
    # chunks 0 and 2 name a; chunk 1 names b and c: worked out while chunk 0 commits
    j = submit(
        team,
        [{"id": a["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": p["id"], "data": {"score": i}} for i in range(500) for p in (b, c)]
        + [{"id": a["id"], "data": {"score": 1000 + i}} for i in range(500)],
    )
    with ThreadPoolExecutor(1) as committer:
        stopped = threading.Event()
        stopped.set()
        assert run_pending(team.services.engine, committer, stopped) is False
        assert job(team, j["id"])["counts"]["NOT_STARTED"] == 2500
        assert run_pending(team.services.engine, committer, threading.Event()) is True
        assert gc.isenabled()  # paused per chunk only
    drain(team)
    assert job(team, j["id"])["counts"]["SUCCESS"] == 2500
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1499, 1501)
    assert [(read(team, p["id"])["data"]["score"], read(team, p["id"])["version"]) for p in (b, c)] == [
        (499, 501),
        (499, 501),
    ]


def test_a_chunk_whose_commit_fails_is_applied_afresh(
    team: Team, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded runner commits a chunk on its helper thread; if that commit fails (the disk, the
    connection), nothing of the chunk is kept and the runner applies it afresh: every entry once, in order."""
    a, b = create(team, {}), create(team, {})
    # chunk 0 names a, chunk 1 names b (worked out while chunk 0 commits), chunk 2 names a again
    j = submit(
        team,
        [{"id": a["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": b["id"], "data": {"score": i}} for i in range(1000)]
        + [{"id": a["id"], "data": {"score": 1000 + i}} for i in range(500)],
    )
    real, failed = UnitOfWork.commit, []

    def first_on_the_helper_fails(uow: UnitOfWork) -> None:
        on_helper = threading.current_thread().name.startswith("failing")
        if on_helper and uow.team_id == team.id and not failed:  # other tests' jobs may be pending too
            failed.append(uow)
            raise sa.exc.OperationalError("COMMIT", None, Exception("disk I/O error"))
        real(uow)

    monkeypatch.setattr(UnitOfWork, "commit", first_on_the_helper_fails)
    with ThreadPoolExecutor(1, thread_name_prefix="failing") as committer:
        assert run_pending(team.services.engine, committer, threading.Event()) is True
    assert len(failed) == 1
    assert f"chunk {j['id']}/0: the commit failed" in caplog.text  # the first chunk, while 1 was worked out
    assert job(team, j["id"])["status"] == "COMPLETED"
    assert job(team, j["id"])["counts"]["SUCCESS"] == 2500
    assert (read(team, a["id"])["data"]["score"], read(team, a["id"])["version"]) == (1499, 1501)
    assert (read(team, b["id"])["data"]["score"], read(team, b["id"])["version"]) == (999, 1001)


def test_a_chunk_that_fails_again_afresh_counts_one_attempt_a_round(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a chunk's writes fail on the helper thread and applying it afresh fails too, that failure is
    recorded once (the chunk backs off before its next attempt) and the runner stops to retry later."""
    p = create(team, {})
    j = submit(team, [{"id": p["id"], "data": {"score": 1}}])

    def broken(uow: UnitOfWork, plan: Any) -> Any:
        if uow.team_id == team.id:  # other tests' jobs may be pending too
            raise RuntimeError("broken")
        return write_updates(uow, plan)

    monkeypatch.setattr(chunks, "write_updates", broken)
    monkeypatch.setattr(bulk, "write_updates", broken)
    with ThreadPoolExecutor(1) as committer, pytest.raises(RuntimeError, match="broken"):
        run_pending(team.services.engine, committer, threading.Event())
    with team.services.engine.connect() as conn:
        attempts = sa.select(t.job_chunks.c.attempts).where(t.job_chunks.c.job_id == j["id"])
        assert conn.scalar(attempts) == 1
    assert job(team, j["id"])["counts"]["NOT_STARTED"] == 1


def test_an_item_holding_the_nul_character_is_one_invalid_entry(team: Team) -> None:
    """PostgreSQL stores no text holding the NUL character, in a string or a key: such an item is an INVALID
    entry, kept with U+FFFD in its place, on both databases; its batch and the others are stored."""
    p = create(team, {})
    items = [{"id": p["id"], "data": {"city": "a\u0000b"}}, {"id": "\u0000"}, {"id": p["id"]}]
    j = submit(team, items + [{"id": p["id"]} for _ in range(ENTRY_BATCH)])
    assert j["counts"] == {"INVALID": 2, "NOT_STARTED": ENTRY_BATCH + 1, "SUCCESS": 0, "ERROR": 0}
    refused = [e for e in entries(team, j["id"]) if e["status"] == "INVALID"]
    assert [(e["item"], e["errors"][0]["code"]) for e in refused] == [
        ({"id": p["id"], "data": {"city": "a\ufffdb"}}, "invalid_value"),
        ({"id": "\ufffd"}, "invalid_character"),
    ]


def test_a_write_sent_behind_is_refused_when_it_settles(team: Team) -> None:
    """Inside ``pipelined()`` the submission's entries go out behind the work that follows (PostgreSQL's
    pipeline mode; a thread of their own on SQLite): one the database refuses is refused when they settle,
    as SQLAlchemy's error, and the transaction keeps nothing."""
    j = submit(team, [{"id": "x"}])  # its entry 0
    sent = []  # what running the refused write returned: it was sent, its refusal still to come
    with team.uow() as uow, pytest.raises(sa.exc.IntegrityError), uow.pipelined() as settle:
        batch.run(uow.conn, batch.insert_entries(uow.conn, j["id"], [(1, "INVALID", "{}", None, None)]))
        settle()
        sent.append(
            batch.run(uow.conn, batch.insert_entries(uow.conn, j["id"], [(0, "INVALID", "{}", None, None)]))
        )
        settle()
    assert sent == [-1]
    assert [e["index"] for e in entries(team, j["id"])] == [0]


def test_a_batch_past_the_database_bound_on_parameters_is_written_whole(team: Team) -> None:
    """SQLite binds at most so many parameters a statement (32,766 by default; builds differ): 6,000 events of
    6 are written in as many statements as the connection's bound needs (one on PostgreSQL, in arrays), all of
    them, in order."""
    p = create(team, {})
    events = [(p["id"], Event("process.noted", {"n": n})) for n in range(6000)]
    with team.uow() as uow:
        sqlite = team.services.settings.is_sqlite
        driver: Any = uow.conn.connection.driver_connection
        was = driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 12_000) if sqlite else None
        try:
            writes = batch.insert_events(uow.conn, team.id, events, actor=None, now=1)
        finally:
            if sqlite:
                driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, was)
        assert len(writes) == (3 if sqlite else 1)  # 2,000 rows of 6 parameters each
        batch.run(uow.conn, writes)
        uow.commit()
    with team.services.engine.connect() as conn:
        noted = sa.select(t.events.c.payload).where(
            t.events.c.process_id == p["id"], t.events.c.type == "process.noted"
        )
        assert [row.payload["n"] for row in conn.execute(noted.order_by(t.events.c.id))] == list(range(6000))


def test_in_a_pipeline_a_statement_waits_for_its_own_reply(team: Team) -> None:
    """Inside ``pipelined()`` (PostgreSQL's pipeline mode; nothing on SQLite) a read gets its rows, through
    SQLAlchemy or ``Statement``, and a write its count: only a write sent with ``reply=False`` goes on
    without its reply."""
    p = create(team, {"data": {"lead_id": "PIPE-1"}})
    with team.uow() as uow, uow.pipelined():
        procedure = load_procedure(uow, "lead")
        process = uow.processes.get(p["id"])
        assert process is not None
        saves = batch.update_processes(uow.conn, procedure, [process], set(), {p["id"]: process.version})
        assert batch.run(uow.conn, saves) == 1
        assert uow.processes.id_by_pk(procedure.id, "PIPE-1") == p["id"]


def wal_frames(engine: sa.Engine) -> int:
    """The frames in the WAL since it was last started over (and all of them copied into the file now)."""
    with engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, frames)
        return int(frames)


def test_the_embedded_runner_starts_the_sqlite_wal_over_as_it_goes(
    sqlite_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's chunks are worked out while the one before commits, so a reader is on the WAL at every commit
    and no commit could start it over. Every ``RESTART_EVERY`` chunks the runner copies it with none of its
    readers on it, and the next commit writes it over from its start; without that (here nothing else copies
    the WAL: the ``Checkpointer`` waits an hour between turns) it holds every frame of the job."""
    team = make_team(sqlite_services)
    engine = sqlite_services.engine
    processes = [create(team, {}) for _ in range(16)]
    items = [  # chunk k names processes 2k and 2k + 1 only: none waits for another
        {"id": processes[2 * k + i % 2]["id"], "data": {"score": i}} for k in range(8) for i in range(1000)
    ]
    frames = {}
    checkpointer = Checkpointer(engine, interval=3600)  # as serve runs it: writers leave the WAL to it
    checkpointer.start()
    try:
        for every in (10**9, 2):
            monkeypatch.setattr(chunks, "RESTART_EVERY", every)
            wal_frames(engine)  # copied: the job's writes start it over
            j = submit(team, items)
            with ThreadPoolExecutor(1) as committer:
                assert run_pending(engine, committer, threading.Event()) is True
            frames[every] = wal_frames(engine)
            assert job(team, j["id"])["counts"]["SUCCESS"] == 8000
    finally:
        checkpointer.stop()
    assert frames[2] * 3 < frames[10**9], "the last chunk's frames against all of the job's"
    assert [read(team, p["id"])["version"] for p in processes] == [1001] * 16


def test_the_embedded_runner_applies_what_it_is_woken_for_and_gives_the_switch_interval_back(
    team: Team,
) -> None:
    """While it runs, the process switches threads every 0.5 ms at most (see ``EmbeddedRunner.start``);
    once stopped, as often as it did before."""
    before = sys.getswitchinterval()
    p = create(team, {})
    runner = EmbeddedRunner(team.services.engine, poll_seconds=60)  # only a wake makes it look again
    runner.start()
    try:
        assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL_S)
        j = submit(team, [{"id": p["id"], "data": {"score": 7}}])
        runner.wake(j["id"])
        deadline = time.monotonic() + 30
        while job(team, j["id"])["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        runner.stop()
    assert sys.getswitchinterval() == before
    assert read(team, p["id"])["data"]["score"] == 7
