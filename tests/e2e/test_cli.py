"""The ``procession`` command, as an operator runs it."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import postgres_database
from tests.e2e.conftest import checking, free_port, start, stop, wait_until_up


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **checking(), "PROCESSION_DATA_DIR": str(data)}
    env.pop("PROCESSION_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "procession.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_teams_keys_and_demo(tmp_path: Path) -> None:
    assert cli(tmp_path, "migrate").returncode == 0
    assert cli(tmp_path, "demo").returncode == 0 and cli(tmp_path, "demo").returncode == 0  # idempotent
    made = cli(tmp_path, "teams", "create", "acme", "--template", "field")
    assert made.returncode == 0, made.stderr
    assert cli(tmp_path, "teams", "create", "acme").returncode == 1
    created = cli(tmp_path, "keys", "create", "--team", "acme", "--role", "admin")
    key = created.stdout.strip()
    assert created.returncode == 0 and created.stdout == key + "\n" and key.startswith("prk_")
    assert cli(tmp_path, "keys", "create", "--team", "acme", "--user", "ghost").returncode == 1
    listed = cli(tmp_path, "keys", "list", "--team", "acme").stdout
    assert key[:12] in listed and key not in listed
    port = free_port()
    server = start("serve", {"PROCESSION_DATA_DIR": str(tmp_path)}, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        headers = {"Authorization": f"Bearer {key}"}
        config = httpx.get(f"{url}/v1/ext/config", headers=headers).json()["_data"]
        assert {p["shortId"] for p in config["procedures"]} == {"ticket", "fieldvisit"}
        key_id = listed.split()[0]
        assert cli(tmp_path, "keys", "revoke", key_id, "--team", "acme").returncode == 0
        assert httpx.get(f"{url}/v1/ext/config", headers=headers).status_code == 401
    finally:
        stop(server)


def test_serve_closes_a_connection_idle_for_its_keep_alive(tmp_path: Path) -> None:
    port = free_port()
    server = start(
        "serve", {"PROCESSION_DATA_DIR": str(tmp_path), "PROCESSION_KEEP_ALIVE_SECONDS": "1"}, port
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            assert (reply.status, reply.read()) == (200, b'{"status":"ok"}')  # the whole reply read
            assert conn.sock is not None  # kept alive
            began = time.monotonic()
            assert conn.sock.recv(1) == b""  # closed by the server (its default, 5 s, would time this out)
            assert time.monotonic() - began < 3
        finally:
            conn.close()
    finally:
        stop(server)


@pytest.mark.postgres
def test_a_worker_exits_1_at_once_on_what_waiting_cannot_fix(tmp_path: Path) -> None:
    """A database that does not exist is a wrong setting, not a database away for a while: the worker says
    so and exits 1 (a supervisor restarts it, and its log says why), rather than waiting for ever."""
    for url in postgres_database():  # a server that answers
        env = {**os.environ, **checking(), "PROCESSION_DATA_DIR": str(tmp_path)}
        env["PROCESSION_DATABASE_URL"] = f"{url}_missing"
        done = subprocess.run(
            [sys.executable, "-m", "procession.cli", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "does not exist" in done.stderr


def test_backup_while_serving_then_restore_once_stopped(tmp_path: Path) -> None:
    """``procession backup`` copies the database a server is using; ``restore`` refuses it while the server
    runs, and puts the copy back once it is stopped (a team made after the backup is gone again)."""
    data, copy = tmp_path / "data", tmp_path / "procession.backup"
    assert cli(data, "teams", "create", "before").returncode == 0
    port = free_port()
    server = start("serve", {"PROCESSION_DATA_DIR": str(data)}, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        made = cli(data, "backup", str(copy))
        assert made.returncode == 0 and "backed up" in made.stderr, made.stderr
        assert cli(data, "teams", "create", "after").returncode == 0
        refused = cli(data, "restore", str(copy))
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        stop(server)
    restored = cli(data, "restore", str(copy))
    assert restored.returncode == 0 and "replacing what it held" in restored.stderr, restored.stderr
    assert cli(data, "teams", "create", "before").returncode == 1  # it exists: restored
    assert cli(data, "teams", "create", "after").returncode == 0  # it did not, in the copy
    missing = cli(data, "restore", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "is not a file" in missing.stderr
