"""The README's start command for the console: ``procession serve --demo`` prints the demo user and password
beside the API key, and they sign in; the same password at every start; ``users set-password`` sets one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.conftest import STARTED, checking, free_port, stop, wait_until_up

CONSOLE_LINE = re.compile(r"Console: (\S+)\s+team '(\S+)', user '(\S+)', password (\S+)")


def serve_demo(data: Path, log: Path) -> tuple[subprocess.Popen, str, tuple[str, ...]]:
    """``procession serve --demo`` on ``data``: the process, its URL, and what it printed for the console."""
    port = free_port()
    env = {**os.environ, **checking(), "PROCESSION_DATA_DIR": str(data)}
    env.pop("PROCESSION_DATABASE_URL", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "procession.cli", "serve", "--demo", "--port", str(port)],
            env=env, stderr=out, stdout=out,
        )  # fmt: skip
    STARTED.append("serve")
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url)
    found = CONSOLE_LINE.search(log.read_text())
    assert found, log.read_text()
    return proc, url, found.groups()


def sign_in(url: str, team: str, user: str, password: str) -> int:
    with httpx.Client(base_url=url) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/sign-in").text)
        assert csrf is not None
        data = {"csrf": csrf.group(1), "team": team, "username": user, "password": password}
        return client.post("/sign-in", data=data).status_code


def test_the_start_command_prints_a_demo_user_who_can_sign_in(tmp_path: Path) -> None:
    proc, url, (console, team, user, password) = serve_demo(tmp_path / "data", tmp_path / "first.log")
    try:
        assert console == f"{url}/" and team == "demo" and user == "admin"
        assert "admin API key: prk_" in (tmp_path / "first.log").read_text()
        assert sign_in(url, team, user, password) == 303
        assert sign_in(url, team, user, password + "x") == 401
    finally:
        stop(proc)
    proc, url, again = serve_demo(tmp_path / "data", tmp_path / "second.log")
    try:
        assert again[3] == password  # kept in the data folder
    finally:
        stop(proc)
    env = {**os.environ, **checking(), "PROCESSION_DATA_DIR": str(tmp_path / "data")}
    env.pop("PROCESSION_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "procession.cli", "users", "set-password", "shane.warne", "--team", "demo",
         "--password", "a member's password"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
