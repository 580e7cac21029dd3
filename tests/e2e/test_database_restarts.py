"""Never stuck: PostgreSQL restarted under a real ``procession serve`` and ``procession worker`` (a crash
restart mid-job, a fast restart while idle), on a throwaway cluster of this module's own (initdb into a
temporary folder, pg_ctl on a free port), so that no other test's database goes down. The worker rides it
out without exiting, nobody starts another, and every entry is applied exactly once.

The cluster runs with ``fsync=off``: a crash restart kills PostgreSQL's processes, not the machine, so what
was written to the OS survives it all the same, and the jobs run faster.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.engine.retry import Backoff, retry
from procession.store import tables as t
from tests.conftest import make_team
from tests.e2e.conftest import STARTED, free_port, start, stop, wait_until_up
from tests.e2e.test_workers import assert_applied_exactly_once, chunks_done, env_of, seed, submit, wait, wake

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("database-restarts")]
LEADS = "/v1/ext/procedure/lead/process"


def unavailable(message: str) -> None:
    """Skip: no way to run a cluster here; under CI=true a failure (the PostgreSQL half must run)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the PostgreSQL half must run)")
    pytest.skip(message)


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: ``PROCESSION_TEST_PG_BIN``, the PATH's, or Debian's newest."""
    candidates = [os.environ.get("PROCESSION_TEST_PG_BIN", "")]
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in filter(None, candidates):
        if all((Path(folder) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


@dataclass
class Cluster:
    bin: Path
    base: Path  # data, socket and log
    port: int
    user: pwd.struct_passwd | None  # who runs PostgreSQL when the tests run as root (it refuses root)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def run(self, *args: str, timeout: float = 90) -> None:
        ids = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        done = subprocess.run(args, cwd=self.base, capture_output=True, text=True, timeout=timeout, **ids)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}{self.log()}"

    def log(self) -> str:
        path = self.base / "postgres.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.base / "postgres.log")
        self.run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", *args, "-o", options
        )

    def start(self) -> None:
        self.ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("stop", "-m", mode)

    def restart(self, mode: str) -> None:
        """``immediate``: a crash restart (every backend killed, recovery at start); ``fast``: a clean one."""
        self.ctl("restart", "-m", mode)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"restarts_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        return self.url(name)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    folder = binaries()
    if folder is None:
        unavailable("initdb/pg_ctl not found (set PROCESSION_TEST_PG_BIN to PostgreSQL's bin folder)")
    assert folder is not None
    user = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam(os.environ.get("PROCESSION_TEST_PG_USER", "postgres"))
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run a throwaway cluster as")
    base = Path(tempfile.mkdtemp(prefix="procession-pg-"))
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    made = Cluster(folder, base, free_port(), user)
    try:
        made.run(
            str(folder / "initdb"), "-D", str(made.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        made.start()
        yield made
    finally:
        with contextlib.suppress(Exception):
            made.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def svc(cluster: Cluster, tmp_path: Path) -> Iterator[Services]:
    """Services on a new database of the cluster (the test's own reads and set-up)."""
    services = bootstrap(Settings(data_dir=tmp_path, database_url=cluster.new_database()))
    yield services
    services.close()


@contextlib.contextmanager
def serving(svc: Services, *, worker: bool = True) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """``procession serve`` (and a ``procession worker``) on ``svc``'s database: the URL and the processes
    (the worker second). The worker must stop with status 0 when asked to (uvicorn ends the server by
    raising the signal again once it has shut down)."""
    port, env = free_port(), env_of(svc)
    procs = [start("serve", env, port)]
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        if worker:
            procs.append(start("worker", env))
        yield url, procs
    finally:
        for proc in reversed(procs):
            stop(proc)
    assert [p.returncode for p in procs[1:]] == [0] * len(procs[1:]), "the worker did not stop cleanly"


def submit_over_http(url: str, key: str, ids: list[str], entries: int) -> str:
    """A bulk update of ``entries`` (entry i names ``ids[i % len(ids)]``), as ``submit`` does, through the
    server (which wakes its tasks): the job's id."""
    items = [{"id": ids[i % len(ids)], "data": {"score": i, "city": f"c{i % 7}"}} for i in range(entries)]
    r = httpx.patch(
        f"{url}{LEADS}", json={"processes": items}, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )
    assert r.status_code == 202, r.text
    return str(r.json()["_data"]["id"])


def done_by(svc: Services, *job_ids: str) -> set[str]:
    with svc.engine.connect() as conn:
        return set(conn.scalars(sa.select(t.tasks.c.done_by).where(t.tasks.c.ref.in_(job_ids)).distinct()))


def woken(svc: Services, job_id: str) -> bool:
    """Whether a task of the job has a procrastinate job waiting (it was woken; its chunks run one after
    another, so the first one only)."""
    with svc.engine.connect() as conn:
        tasks = set(conn.scalars(sa.select(t.tasks.c.id).where(t.tasks.c.ref == job_id)))
        jobs = conn.exec_driver_sql(
            "SELECT (args->>'task_id')::bigint FROM procrastinate_jobs"
            " WHERE task_name = 'procession:run_task' AND status = 'todo'"
        )
        return bool(tasks & set(jobs.scalars()))


def forget_wake_ups(svc: Services) -> None:
    """Lose every wake-up (as a database restored from before them would)."""
    with svc.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM procrastinate_jobs")


def alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def working(worker: subprocess.Popen) -> bool:
    """True, or a failure at once if the worker exited (as procrastinate's did when its database restarted)."""
    assert alive(worker), f"the worker exited (status {worker.returncode}) when the database restarted"
    return True


def test_a_crash_restart_mid_job_loses_nothing_and_stops_no_worker(cluster: Cluster, svc: Services) -> None:
    team = make_team(svc)
    ids, entries = seed(team, 300), 30_000  # every chunk names every process: 30 chunks, one at a time
    workers = STARTED.count("worker")
    with serving(svc) as (url, (server, worker)):
        job_id = submit_over_http(url, team.key(), ids, entries)
        wait(lambda: chunks_done(svc, job_id) >= 3, timeout=40)
        assert chunks_done(svc, job_id) < 25, "the job was nearly done before the restart: make it bigger"
        cluster.restart("immediate")
        wait(lambda: working(worker) and chunks_done(svc, job_id) == 30, timeout=45)
        assert working(worker) and alive(server)
    assert STARTED.count("worker") == workers + 1
    assert_applied_exactly_once(svc, job_id, ids, entries)
    assert done_by(svc, job_id) == {f"{socket.gethostname()}:{worker.pid}"}  # that one worker, never another


def test_a_fast_restart_while_idle_stops_nothing_and_serve_reconciles(
    cluster: Cluster, svc: Services
) -> None:
    """With no worker at all, the server wakes the due tasks nobody woke (its reconciler), also after the
    database was away for more than a round; then a worker idle through a fast restart runs the next job."""
    team = make_team(svc)
    (a, b), entries = [seed(team, 100) for _ in range(2)], 3_000
    workers = STARTED.count("worker")
    with serving(svc, worker=False) as (url, [server]):
        first = submit(team, a, entries)  # stored, not woken (the test's own services wake nothing)
        wait(lambda: woken(svc, first), timeout=20)
        cluster.stop()
        time.sleep(5.5)  # a reconciler round (every 5 s) finds the database away: the back-off
        cluster.start()
        forget_wake_ups(svc)
        wait(lambda: woken(svc, first), timeout=30)
        assert alive(server)
    with serving(svc) as (url, (server, worker)):
        wait(lambda: chunks_done(svc, first) == 3, timeout=30)
        time.sleep(1)  # idle, listening
        cluster.restart("fast")
        time.sleep(2)  # procrastinate's worker by itself stopped within a second of that
        assert working(worker)
        second = submit_over_http(url, team.key(), b, entries)
        wait(lambda: working(worker) and chunks_done(svc, second) == 3, timeout=30)
        assert working(worker) and alive(server)
    assert STARTED.count("worker") == workers + 1
    for job_id, ids in ((first, a), (second, b)):
        assert_applied_exactly_once(svc, job_id, ids, entries)
    assert done_by(svc, first, second) == {f"{socket.gethostname()}:{worker.pid}"}


def test_a_worker_started_before_its_database_waits_for_it_and_stops_at_once(
    cluster: Cluster, svc: Services
) -> None:
    """Started while the database is down, the worker waits for it (it does not exit), then works; stopped
    while the database is down again, it exits at once, with status 0."""
    team = make_team(svc)
    ids, entries = seed(team, 50), 2_000
    cluster.stop()
    try:
        worker = start("worker", env_of(svc))
        time.sleep(2)  # refused, and tried again
        assert working(worker)
    finally:
        cluster.start()
    try:
        job_id = submit(team, ids, entries)
        wake(svc, job_id)
        wait(lambda: working(worker) and chunks_done(svc, job_id) == 2, timeout=30)
        cluster.stop()
        time.sleep(1)
        began = time.monotonic()
        worker.terminate()
        assert worker.wait(15) == 0
        assert time.monotonic() - began < 8  # at most a pool's timeout, while the database is away
    finally:
        stop(worker)
        cluster.start()
    assert_applied_exactly_once(svc, job_id, ids, entries)


def test_retry_waits_for_a_stopped_database(cluster: Cluster) -> None:
    """The retry helper on a real connection: refused while the cluster is stopped, tried again after
    growing pauses, connected once it is back; a stop event ends it while the database is still away."""
    dsn = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres connect_timeout=5"
    calls: list[float] = []

    def connect() -> int:
        calls.append(time.monotonic())
        with psycopg.connect(dsn) as conn:
            return int(conn.execute("SELECT 1").fetchone()[0])  # type: ignore[index]

    cluster.stop()
    starter = threading.Timer(2.0, cluster.start)
    try:
        stopped = threading.Event()
        threading.Timer(0.3, stopped.set).start()
        assert retry(connect, what="test", stop=stopped, backoff=Backoff(0.05, 0.1)) is None
        assert len(calls) >= 2  # refused, tried again, until stopped
        calls.clear()
        starter.start()
        assert retry(connect, what="test") == 1
    finally:
        if starter.is_alive() or starter.finished.is_set():
            starter.join()
        else:
            cluster.start()
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(calls) >= 3, calls  # refused at least twice
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[0] >= 0.45
