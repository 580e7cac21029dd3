"""A full disk is an answer, not an accident: a real ``procession serve`` on SQLite whose data folder is a small
tmpfs. Filled, writes answer 507 with the envelope and ``/readyz`` 503, and a failed upload leaves nothing
behind; once space is freed, it takes writes again by itself and every create it accepted before is there."""

from __future__ import annotations

import errno
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from procession.bootstrap import bootstrap
from procession.config import Settings
from tests.conftest import make_team
from tests.e2e.conftest import free_port, start, stop, wait_until_up

LEADS = "/v1/ext/procedure/lead/process"
FILLER = "filler"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards; the test is skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def resize(disk: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the disk has no byte left."""
    with path.open("wb", buffering=0) as out:
        for chunk in (65536, 4096, 512, 64, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def partial_files(disk: Path) -> list[Path]:
    """Uploads' leftovers: partial files, or any file under ``files`` that no upload answered for."""
    return [p for p in (disk / "files").rglob("*") if p.is_file()] if (disk / "files").exists() else []


def assert_storage_full(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["_data"] is None and set(body) == {"_data", "_meta", "_errors"}
    [error] = body["_errors"]
    assert error["code"] == "storage_full" and "storage is full" in error["message"], error


@pytest.fixture
def full_disk_server(small_disk: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server whose SQLite file and uploads are on ``small_disk``; its URL and a team's admin key."""
    database = f"sqlite:///{small_disk / 'procession.db'}"
    svc = bootstrap(Settings(data_dir=small_disk, database_url=database))  # migrated, with a team, first
    try:
        key = make_team(svc).key()
    finally:
        svc.close()
    port = free_port()
    env = {"PROCESSION_DATA_DIR": str(small_disk), "PROCESSION_DATABASE_URL": database}
    proc = start("serve", env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url, key
    finally:
        stop(proc)


def test_a_full_disk_answers_507_readyz_fails_and_it_recovers_once_space_is_freed(
    small_disk: Path, full_disk_server: tuple[str, str]
) -> None:
    url, key = full_disk_server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        assert http.get("/readyz").json()["_data"] == {"database": "writable"}
        note = "x" * 1000  # each create takes a page or so
        accepted: list[str] = []
        refused = None
        lead = {"data": {"city": note, "source": note}}
        for n in range(5000):
            r = http.post(LEADS, json={"data": {**lead["data"], "firstname": f"n{n}"}})
            if r.status_code != 201:
                refused = r
                break
            accepted.append(r.json()["_data"]["id"])
        assert refused is not None, "the disk never filled"
        assert_storage_full(refused)
        assert len(accepted) >= 10, len(accepted)
        fill(small_disk / FILLER)  # the last bytes too, whatever the database left
        for _ in range(50):  # a write or two may still fit in pages the refused one left free
            r = http.post(LEADS, json=lead)
            if r.status_code != 201:
                break
            accepted.append(r.json()["_data"]["id"])
        assert_storage_full(r)
        photo = {"photo": ("p.png", b"p" * 200_000, "image/png")}
        assert_storage_full(http.post("/v1/ext/photo", files=photo))
        assert_storage_full(http.post(f"/v1/ext/photo/{uuid.uuid4()}", files=photo))
        assert partial_files(small_disk) == []
        not_ready = httpx.get(f"{url}/readyz")  # no key needed
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["_errors"][0]["code"] == "storage_full", not_ready.text
        assert http.get(f"{LEADS}/{accepted[-1]}").status_code == 200  # reads go on

        (small_disk / FILLER).unlink()  # space freed: the server takes writes again by itself
        resize(small_disk, "8m")
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.2)
        after = http.post(LEADS, json={"data": {"firstname": "after"}})
        assert after.status_code == 201, after.text
        uploaded = http.post("/v1/ext/photo", files=photo)
        assert uploaded.status_code == 201, uploaded.text
        assert http.get(f"/v1/ext/photo/{uploaded.json()['_data']['id']}").content == b"p" * 200_000
        assert [p.name for p in partial_files(small_disk)] == [uploaded.json()["_data"]["id"]]
        missing = [i for i in accepted if http.get(f"{LEADS}/{i}").status_code != 200]
        assert missing == [], f"{len(missing)} of {len(accepted)} accepted creates are gone"
