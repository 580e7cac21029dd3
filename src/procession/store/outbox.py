"""The outbox of a unit of work: the events of the processes it saved, written when it commits, in its
transaction, together with the follow-up rows registered for them (work that must happen because of a
change: it is kept exactly when the change is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procession.domain.procedure import Procedure
from procession.domain.process import Event, Process
from procession.store import tables as t
from procession.store.batch import Write, insert_events, run
from procession.store.statement import Statement

if TYPE_CHECKING:
    from procession.store.uow import UnitOfWork

Recorded = tuple[str, Event]  # (process id, event)
INSERT_EVENTS = Statement(t.events.insert(), json_params=["payload"])
FEW = 8  # events written one statement each, below this: a batch's statement text differs per count


@dataclass
class Saves:
    """Processes of one procedure saved together, as they are now, with their events in order."""

    procedure: Procedure
    processes: dict[str, Process]
    events: list[Recorded]
    actor: str | None
    now: int
    writes: list[Write] | None  # built ahead, or None


FollowUp = Callable[["UnitOfWork", list[Saves]], None]  # writes rows for saves, in their transaction


class Outbox:
    """A unit of work's (which it does not reference: no cycle keeps either alive after a request)."""

    def __init__(self, follow_ups: tuple[FollowUp, ...]) -> None:
        self.follow_ups = follow_ups
        self._groups: list[Saves] = []

    def add(
        self,
        procedure: Procedure,
        processes: dict[str, Process],
        events: list[Recorded],
        *,
        actor: str | None,
        now: int,
        writes: list[Write] | None = None,
    ) -> None:
        """Events of ``processes`` saved with their change, by ``actor`` at ``now`` (``writes``: their insert,
        built ahead)."""
        if events:
            self._groups.append(Saves(procedure, processes, events, actor, now, writes))

    def flush(self, uow: UnitOfWork) -> None:
        """Register the follow-ups of the events so far, then write the events, in ``uow``."""
        groups, self._groups = self._groups, []
        if not groups:
            return
        for follow_up in self.follow_ups:
            follow_up(uow, groups)
        conn, team = uow.conn, uow.team_id
        for g in groups:
            if g.writes is not None:
                run(conn, g.writes)
            elif len(g.events) < FEW:
                rows = [
                    {
                        "team_id": team,
                        "process_id": pid,
                        "type": e.type,
                        "actor": g.actor,
                        "payload": e.payload,
                        "created_at": g.now,
                    }
                    for pid, e in g.events
                ]
                INSERT_EVENTS.many(conn, rows)
            else:
                run(conn, insert_events(conn, team, g.events, actor=g.actor, now=g.now))
