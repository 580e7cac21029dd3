"""The unit of work: one transaction, the team's repositories, and the only place that commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg
import sqlalchemy as sa

from procession.store import tenancy
from procession.store.db import DEFAULT_TIMEOUT
from procession.store.outbox import FollowUp, Outbox
from procession.store.repositories.connectors import Connectors, Links
from procession.store.repositories.deliveries import Deliveries
from procession.store.repositories.files import Files, Idempotency
from procession.store.repositories.jobs import Jobs
from procession.store.repositories.processes import Events, Processes
from procession.store.repositories.records import Records
from procession.store.repositories.runs import Runs
from procession.store.repositories.schemas import Entities, Procedures
from procession.store.repositories.teams import Keys, Pods, Users
from procession.store.repositories.webhooks import Webhooks
from procession.store.sqlite import bound, unbound, write_lock
from procession.store.statement import BEHIND, Statement
from procession.store.tasks import Tasks
from procession.tuning import quick_switches

LOCK_TIMEOUT_S = 30


Wake = Callable[[str, str], None]  # (kind, ref): tasks of that kind for ref were committed
WakeAt = Callable[[int, int], None]  # (task id, epoch ms): that task is due then
WOKEN = "procession.woken"  # key in a connection's ``info``: the (kind, ref) of tasks its savepoints added


def _no_wake(kind: str, ref: str) -> None:
    pass


def _no_wake_at(task_id: int, at: int) -> None:
    pass


class UnitOfWork:
    """``with UnitOfWork(engine, team_id) as uow: ...; uow.commit()``; anything not committed rolls back.
    Its commit first writes the events of the processes it saved and their follow-up rows (``Outbox``), and
    once committed wakes the background work it added (``Tasks``).

    On SQLite a writing unit of work first takes this process's write lock for the file and keeps it until
    it commits or rolls back, so writers wait their turn in order; readers (``write=False``) never take it.

    ``within`` runs it inside a transaction already open on that connection, as a savepoint: its commit
    keeps its changes for that transaction's commit, and a rollback undoes them alone (group commit).

    ``deadline_ms`` bounds each of its statements (a request's: ``Settings.statement_timeout_ms``); 0 leaves
    them unbounded (background work), None as the engine's connections are (``db.make_engine``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        team_id: str,
        *,
        write: bool = True,
        within: sa.Connection | None = None,
        follow_ups: tuple[FollowUp, ...] = (),
        wake: Wake = _no_wake,
        wake_at: WakeAt = _no_wake_at,
        deadline_ms: int | None = None,
    ) -> None:
        self.engine, self.team_id, self.write, self.within = engine, team_id, write, within
        self.follow_ups, self.wake, self.wake_at, self.deadline_ms = follow_ups, wake, wake_at, deadline_ms
        self._lock: threading.Lock | None = None
        self._bounded = False  # its connection's statements are bounded (``deadline_ms``)
        self.tx: sa.RootTransaction | Savepoint
        self._team: Any = None  # while the tenancy check is on: the token of its team, reset on exit
        self.depth = 0  # automation runs whose saves led to this unit of work's (see ``engine.runs``)
        self.committed: list[Callable[[], None]] = []  # ``on_commit``'s

    def __enter__(self) -> UnitOfWork:
        if self.within is not None:
            conn = self.conn = self.within
            self.tx = Savepoint(conn)
        else:
            if self.write:
                lock = write_lock(self.engine)
                # after 30 s (SQLite's busy timeout) go on without it: SQLite itself still serialises writers
                if lock is not None and lock.acquire(timeout=LOCK_TIMEOUT_S):
                    self._lock = lock
            try:
                conn = self.engine.connect()
                if self.write:
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                self.conn = conn
                conn.info.pop(WOKEN, None)  # left by a transaction that rolled back
                self.tx = conn.begin()
                if self.deadline_ms is not None:
                    _bound(conn, self.deadline_ms)
                    self._bounded = True
            except BaseException:
                self._release()
                raise
        team = self.team_id
        self.users = Users(conn, team)
        self.pods = Pods(conn, team)
        self.keys = Keys(conn, team)
        self.procedures = Procedures(conn, team)
        self.entities = Entities(conn, team)
        self.records = Records(conn, team)
        self.outbox = Outbox(self.follow_ups)
        self.processes = Processes(conn, team, self.outbox)
        self.events = Events(conn, team)
        self.files = Files(conn, team)
        self.idempotency = Idempotency(conn, team)
        self.jobs = Jobs(conn, team)
        self.tasks = Tasks(conn, team)
        self.runs = Runs(conn, team)
        self.connectors = Connectors(conn, team)
        self.links = Links(conn, team)
        self.webhooks = Webhooks(conn, team)
        self.deliveries = Deliveries(conn, team)
        if tenancy.checking:  # entered and left on one thread: its statements are this team's
            self._team = tenancy.TEAM.set(team)
        return self

    def savepoint(self) -> UnitOfWork:
        """A unit of work inside this one's transaction: its rollback undoes its own changes alone."""
        inner = UnitOfWork(self.engine, self.team_id, within=self.conn, follow_ups=self.follow_ups)
        inner.depth = self.depth
        return inner

    @contextmanager
    def pipelined(self) -> Iterator[Callable[[], None]]:
        """Writes built with ``reply=False`` (``batch.insert_entries``) go out behind the work that follows, so
        that they overlap it: on PostgreSQL in pipeline mode, where every other statement, SQLAlchemy's too,
        waits for its own reply and those before it (``db.await_reply``); on SQLite on a thread of their
        own, as one call into SQLite each, made without Python's lock (the connection serialises the calls).
        A write's error comes later, as SQLAlchemy's like any other. Yields ``settle()``, which waits for the
        writes so far: call it before the next large one, as what is in flight is kept until it is done."""
        if self.conn.dialect.name != "postgresql":
            with quick_switches(), ThreadPoolExecutor(1, thread_name_prefix="procession-behind") as thread:
                sent: list[Future[Any]] = []

                def settle() -> None:
                    while sent:
                        sent.pop(0).result()

                def send(sql: str, args: Any, many: bool) -> None:
                    sent.append(thread.submit(Statement.on_driver, self.conn, sql, args, many=many))

                self.conn.info[BEHIND] = send
                try:
                    yield settle
                    settle()
                finally:  # leaving the thread's block waits for what is still running
                    del self.conn.info[BEHIND]
            return
        driver: Any = self.conn.connection.driver_connection
        try:
            with driver.pipeline() as pipeline:
                yield pipeline.sync
        except psycopg.Error as e:  # raised by a reply: when settling or when the pipeline ends
            raise sa.exc.DBAPIError.instance(None, None, e, psycopg.Error) from e

    def on_commit(self, call: Callable[[], None]) -> None:
        """Call ``call`` once this unit of work has committed (a metric counted: never for a rollback)."""
        self.committed.append(call)

    def commit(self) -> None:
        try:
            self.outbox.flush(self)
            self.tx.commit()
        finally:
            self._release()
        committed, self.committed = self.committed, []
        for call in committed:
            call()
        woken, self.tasks.added = self.tasks.added, set()
        if self.within is None:  # and what its savepoints added
            woken |= self.conn.info.pop(WOKEN, set())
        else:  # woken once the enclosing transaction commits (``wake_committed``)
            self.conn.info.setdefault(WOKEN, set()).update(woken)
            return
        for kind, ref in sorted(woken):
            self.wake(kind, ref)
        later, self.tasks.later = self.tasks.later, {}
        for task_id, at in later.items():
            self.wake_at(task_id, at)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.tx.is_active:
                self.tx.rollback()
            if self.within is None:
                if self._bounded and self.conn.dialect.name == "sqlite":
                    self._bounded = False
                    unbound(self.conn.connection.driver_connection)
                self.conn.close()
        finally:
            self._release()
            if self._team is not None:
                tenancy.TEAM.reset(self._team)
                self._team = None

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


class UnitsOfWork:
    """Opens units of work on one database, each with the follow-ups and the waker the wiring chose."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        follow_ups: tuple[FollowUp, ...] = (),
        within: sa.Connection | None = None,
        deadline_ms: int | None = None,
    ) -> None:
        self.engine, self.follow_ups, self.within = engine, follow_ups, within
        self.deadline_ms = deadline_ms  # each statement's bound (``UnitOfWork``)
        self.waker: Any = None  # the task engine's, set when it starts

    def write(self, team_id: str) -> UnitOfWork:
        """A unit of work that writes (on SQLite it takes the file's write lock)."""
        return UnitOfWork(
            self.engine,
            team_id,
            within=self.within,
            follow_ups=self.follow_ups,
            wake=self.wake,
            wake_at=self.wake_at,
            deadline_ms=self.deadline_ms,
        )

    def read(self, team_id: str) -> UnitOfWork:
        """A unit of work that only reads."""
        return UnitOfWork(self.engine, team_id, write=False, within=self.within, deadline_ms=self.deadline_ms)

    def nested(self, conn: sa.Connection) -> UnitsOfWork:
        """The same, each unit of work a savepoint of the transaction open on ``conn``."""
        return UnitsOfWork(self.engine, follow_ups=self.follow_ups, within=conn, deadline_ms=self.deadline_ms)

    def bound(self, conn: sa.Connection) -> None:
        """Bound the statements of ``conn``, which opened a transaction of its own, as this one's are."""
        if self.deadline_ms is not None:
            _bound(conn, self.deadline_ms)

    def wake(self, kind: str, ref: str) -> None:
        """Tasks of ``kind`` for ``ref`` were committed: the engine runs them."""
        if self.waker is not None:
            self.waker.wake(kind, ref)

    def wake_at(self, task_id: int, at: int) -> None:
        """Task ``task_id`` is due at ``at`` (a time to come): the engine runs it then."""
        if self.waker is not None:
            self.waker.wake_at(task_id, at)

    def wake_committed(self, conn: sa.Connection) -> None:
        """Wake what the savepoints of ``conn``'s transaction, just committed, added."""
        for kind, ref in sorted(conn.info.pop(WOKEN, ())):
            self.wake(kind, ref)


def _bound(conn: sa.Connection, deadline_ms: int) -> None:
    """Each statement of ``conn``'s transaction runs at most ``deadline_ms`` (0: unbounded): on SQLite until
    ``unbound`` (``UnitOfWork.__exit__``), on PostgreSQL for the transaction (``SET LOCAL``, sent only where
    the connection's default differs: background work on a server's engine)."""
    if conn.dialect.name == "sqlite":
        bound(conn.connection.driver_connection, deadline_ms)
    elif deadline_ms != DEFAULT_TIMEOUT.get(conn.engine, 0):
        Statement.on_driver(conn, f"SET LOCAL statement_timeout = {int(deadline_ms)}", (), many=False)


class SavepointLost(Exception):
    """A savepoint's changes could not be undone: the enclosing transaction must not commit."""


class Savepoint:
    """A savepoint with a transaction's ``commit``/``rollback``/``is_active``, sent straight to the driver:
    SQLAlchemy's ``begin_nested`` compiles and runs two statements through its full machinery (~50 µs),
    which is a sixth of a whole create when many share one transaction."""

    name = "uow"  # one name, so one prepared statement each; SQLite releases the innermost of that name

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.is_active = True
        self._send(f"SAVEPOINT {self.name}")

    def commit(self) -> None:
        self.is_active = False
        self._send(f"RELEASE SAVEPOINT {self.name}")

    def rollback(self) -> None:
        self.is_active = False
        try:
            self._send(f"ROLLBACK TO SAVEPOINT {self.name}")
            self._send(f"RELEASE SAVEPOINT {self.name}")
        except Exception as e:  # its changes may still be in the transaction: the whole of it must go
            raise SavepointLost("a savepoint could not be rolled back") from e

    def _send(self, sql: str) -> None:
        Statement.on_driver(self.conn, sql, (), many=False)


class Lookups:
    """The domain's ``Lookups`` answered from the unit of work's repositories, remembered for its lifetime
    (one request or one chunk), so a bulk payload naming the same user a thousand times asks once."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._memo: dict[tuple[str, ...], Any] = {}

    def _ask(self, key: tuple[str, ...], ask: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = ask()
        return self._memo[key]

    def user_id(self, ref: str) -> str | None:
        return self._ask(("user", ref), lambda: self.uow.users.id_of(ref))

    def pod_id(self, ref: str) -> str | None:
        return self._ask(("pod", ref), lambda: self.uow.pods.id_of(ref))

    def file_exists(self, file_id: str) -> bool:
        return self._ask(("file", file_id), lambda: self.uow.files.exists(file_id))

    def record_exists(self, record_id: str, entity_id: str | None) -> bool:
        return self._ask(
            ("record", record_id, entity_id or ""),
            lambda: self.uow.records.exists(record_id, entity_id),
        )

    def process_exists(self, process_id: str, procedure_id: str | None) -> bool:
        return self._ask(
            ("process", process_id, procedure_id or ""),
            lambda: self.uow.processes.exists(process_id, procedure_id),
        )
