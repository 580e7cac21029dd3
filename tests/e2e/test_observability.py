"""Over HTTP, with real ``procession serve`` (and ``worker``) processes whose logs are read: a rate limit
shared by two servers through Redis, a request id crossing from a request to its job's log lines, and no
credential in any log line."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from procession.bootstrap import Services
from procession.services.accounts import set_password
from tests.conftest import make_team
from tests.e2e.conftest import STARTED, checking, free_port, server_env, stop, wait_until_up

REDIS = ("127.0.0.1", 6379)
LEADS = "/v1/ext/procedure/lead/process"


def redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running(
    command: str, env: dict[str, str], log: Path, port: int | None = None, *more: str
) -> Iterator[str]:
    """``procession <command>``, its log lines (stderr) written to ``log``; its URL for ``serve``."""
    args = [sys.executable, "-m", "procession.cli", command, *(["--port", str(port)] if port else []), *more]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env={**os.environ, **checking(), **env}, stderr=out)
    STARTED.append(command)
    url = f"http://127.0.0.1:{port}"
    try:
        if port:
            wait_until_up(url)
        yield url
    finally:
        stop(proc)


def lines(log: Path) -> list[dict]:
    """The structured lines of a log (JSON: its stream is a file)."""
    return [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.mark.skipif(not redis_up(), reason="needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
def test_two_servers_sharing_one_limit_answer_429s_with_the_headers(
    services: Services, tmp_path: Path
) -> None:
    env = server_env(services) | {
        "PROCESSION_RATE_LIMIT_KEY": "6/minute",
        "PROCESSION_RATE_LIMIT_TEAM": "100/minute",
        "PROCESSION_RATE_LIMIT_STORAGE": f"redis://{REDIS[0]}:{REDIS[1]}/0",
        "PROCESSION_EMBEDDED_WORKER": "false",
    }
    team = make_team(services)
    key, other = team.key(), team.key()
    with (
        running("serve", env, tmp_path / "a.log", free_port()) as a,
        running("serve", env, tmp_path / "b.log", free_port()) as b,
    ):
        replies = [
            httpx.post(f"{url}{LEADS}/list", json={"limit": 1}, headers={"Authorization": f"Bearer {key}"})
            for url in [a, b] * 4
        ]
        statuses = [r.status_code for r in replies]
        assert statuses == [200] * 6 + [429] * 2  # the six allowed, across both servers, then refused by each
        remaining = [int(r.headers["RateLimit-Remaining"]) for r in replies]
        assert remaining == [5, 4, 3, 2, 1, 0, 0, 0]
        assert all(r.headers["RateLimit-Limit"] == "6" for r in replies)
        for refused in replies[6:]:
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert 1 <= int(refused.headers["RateLimit-Reset"]) <= 60
            body = refused.json()
            assert body["_errors"][0]["code"] == "rate_limited"
            assert body["_meta"]["requestId"] == refused.headers["X-Request-ID"]
        # another key of the team has its own count; the team's (100) is the looser, so the key's is told
        fresh = httpx.post(f"{b}{LEADS}/list", json={}, headers={"Authorization": f"Bearer {other}"})
        assert fresh.status_code == 200 and fresh.headers["RateLimit-Remaining"] == "5"
        # a request without a valid key is not counted against anyone: a 401, no limit headers
        anonymous = httpx.post(f"{a}{LEADS}/list", json={})
        assert anonymous.status_code == 401 and "RateLimit-Limit" not in anonymous.headers


def test_a_request_id_crosses_from_a_request_to_its_job_s_log_lines(own: Services, tmp_path: Path) -> None:
    """On a database of its own, so that its worker is the one that does the job."""
    services = own
    env, team = server_env(services), make_team(services)
    worker_log = tmp_path / "worker.log"
    with running("serve", env, tmp_path / "serve.log", free_port()) as url:
        metrics_port = free_port()  # the worker's own metrics (PostgreSQL): it does the job
        worker = (
            None
            if services.settings.is_sqlite
            else running("worker", env, worker_log, None, "--metrics-port", str(metrics_port))
        )
        with (
            worker or _nothing(),
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {team.key()}"}) as http,
        ):
            lead = http.post(LEADS, json={"data": {}}).json()["_data"]
            r = http.patch(
                LEADS,
                json={"processes": [{"id": lead["id"], "data": {"score": 4}}]},
                headers={"X-Request-ID": "bulk-42"},
            )
            assert r.status_code == 202 and r.headers["X-Request-ID"] == "bulk-42"
            job = r.json()["_data"]["id"]
            deadline = time.monotonic() + 60
            while http.get(f"/v1/ext/background-job/{job}").json()["_data"]["status"] != "COMPLETED":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(0.2)  # the line is written once the job's last chunk has committed
            where = url if services.settings.is_sqlite else f"http://127.0.0.1:{metrics_port}"
            for _ in range(100):  # the worker's metrics server may still be starting
                try:
                    scraped = httpx.get(f"{where}/metrics").text
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            succeeded = re.search(
                r'procession_bulk_entries_total\{kind="update",outcome="SUCCESS"\} (\S+)', scraped
            )
            assert succeeded is not None and float(succeeded.group(1)) >= 1
            assert "procession_tasks_pending" in scraped
    logs = lines(tmp_path / "serve.log") + (lines(worker_log) if worker_log.exists() else [])
    access = [x for x in logs if x["logger"] == "procession.access" and x.get("request_id") == "bulk-42"]
    assert len(access) == 1 and access[0]["status"] == 202 and access[0]["team"] == team.id
    assert (
        access[0]["route"] == LEADS.replace("lead", "{procedureShortId}") and access[0]["method"] == "PATCH"
    )
    finished = [x for x in logs if x["msg"] == f"job {job} completed"]
    assert len(finished) == 1 and finished[0]["request_id"] == "bulk-42"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_no_log_line_holds_a_key_a_connector_s_secret_or_a_password(
    services: Services, tmp_path: Path
) -> None:
    env = server_env(services) | {"PROCESSION_LOG_LEVEL": "DEBUG"}
    team = make_team(services)
    key, password, secret = team.key(), "pw-Sesame-7f3e9a", "conn-secret-b41d77e0"
    unknown_key = "prk_" + "x" * 43
    services.run(set_password, team.id, "admin", password)
    log = tmp_path / "serve.log"
    with running("serve", env, log, free_port()) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            made = http.post(
                "/v1/admin/connectors",
                json={
                    "name": "crm",
                    "kind": "http",
                    "baseUrl": "http://127.0.0.1:9",
                    "credentials": {"auth": secret},
                },
            )
            assert made.status_code == 201, made.text
            again = http.post(
                "/v1/admin/connectors", json={"name": "crm", "kind": "http", "credentials": {"auth": secret}}
            )
            assert again.status_code == 409  # refused: its body quoted nowhere
            broken = http.post(
                "/v1/admin/connectors",
                content=b'{"credentials": {"auth": "' + secret.encode(),
                headers={"Content-Type": "application/json"},
            )
            assert broken.status_code == 400
            assert (
                http.post(f"{LEADS}/list?token={secret}", json={}).status_code == 200
            )  # a query is not logged
            unknown = http.post(f"{LEADS}/list", json={}, headers={"Authorization": f"Bearer {unknown_key}"})
            assert unknown.status_code == 401
        for tried in (password + "-wrong", password):
            with httpx.Client(base_url=url, follow_redirects=False) as console:
                csrf = re.search(r'name="csrf" value="([^"]+)"', console.get("/sign-in").text)
                assert csrf is not None
                form = {"csrf": csrf.group(1), "team": team.slug, "username": "admin", "password": tried}
                assert console.post("/sign-in", data=form).status_code == (303 if tried == password else 401)
    text = log.read_text()
    logged = lines(log)
    assert len([x for x in logged if x["logger"] == "procession.access"]) >= 7  # the requests were logged
    for held in (key, key[4:20], password, secret, unknown_key):
        assert held not in text, f"{held!r} is in the log"
