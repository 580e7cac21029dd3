"""``procession serve`` killed with SIGKILL, again and again, under a stream of creates from several clients,
each carrying an ``Idempotency-Key`` and sent again on a lost connection once the server is back (two
clients send every key, at once, as a client retrying on another connection would). Afterwards every create
answered 2xx is there, once, as answered; no key made two processes; no reply was a 5xx. On each database,
its own (``own``), so that no other test's server meets the kills."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from procession.bootstrap import Services
from tests.conftest import make_team
from tests.e2e.conftest import free_port, server_env, start, stop, wait_until_up
from tests.e2e.test_workers import wait

LEADS = "/v1/ext/procedure/lead/process"
CLIENTS, KEYS = 4, 60  # each key sent by two of the clients: 120 keys, 240 creates
KILLS = 2  # after about a third and two thirds of the answers (a start is the cost: a few seconds)
GIVE_UP_S = 120  # a client that cannot get an answer this long fails the test (the server never came back)


def all_processes(http: httpx.Client) -> list[dict[str, Any]]:
    """Every lead of the team (deleted ones too), page after page."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = {"limit": 100, "includeDeleted": True} | ({"cursor": cursor} if cursor else {})
        r = http.post(f"{LEADS}/list", json=body)
        assert r.status_code == 200, r.text
        out += r.json()["_data"]
        cursor = r.json()["_meta"]["nextCursor"]
        if not cursor:
            return out


def test_serve_killed_during_keyed_creates_loses_none_and_doubles_none(own: Services) -> None:
    team = make_team(own)
    port, env = free_port(), server_env(own)
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {team.key()}"}
    answers: dict[tuple[int, str], httpx.Response] = {}  # (client, key) -> the answer it got
    lost = Counter[int]()  # connections lost, by client
    lock = threading.Lock()

    def client(n: int) -> None:
        """Creates, one at a time, each sent again on a lost connection until it is answered."""
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            for i in range(KEYS):
                key = f"key-{n // 2}-{i}"  # clients 0 and 1 send the same keys, so do 2 and 3
                body = {"data": {"source": key, "score": i}}
                began = time.monotonic()
                while True:
                    try:
                        r = http.post(LEADS, json=body, headers={"Idempotency-Key": key})
                        break
                    except httpx.TransportError:
                        assert time.monotonic() - began < GIVE_UP_S, f"no answer to {key}"
                        with lock:
                            lost[n] += 1
                        time.sleep(0.05)
                with lock:
                    answers[(n, key)] = r

    server = start("serve", env, port)
    try:
        wait_until_up(url)
        with ThreadPoolExecutor(CLIENTS) as pool:
            running = [pool.submit(client, n) for n in range(CLIENTS)]
            for k in range(1, KILLS + 1):
                wait(lambda: len(answers) >= k * CLIENTS * KEYS // (KILLS + 1), timeout=GIVE_UP_S)  # noqa: B023
                server.send_signal(signal.SIGKILL)
                server.wait()
                server = start("serve", env, port)
                wait_until_up(url)
            for done in running:
                done.result()  # a client's failure, raised here
        assert len(answers) == CLIENTS * KEYS
        with httpx.Client(base_url=url, headers=auth) as http:
            stored = all_processes(http)
    finally:
        stop(server)
    statuses = Counter(r.status_code for r in answers.values())
    assert statuses == {201: CLIENTS * KEYS}, {a: r.text for a, r in answers.items() if r.status_code != 201}
    assert sum(lost.values()) >= KILLS  # the kills cut clients off: what follows was tried under them
    by_key: dict[str, list[str]] = {}
    for p in stored:
        by_key.setdefault(p["data"]["source"], []).append(p["id"])
    assert {k: ids for k, ids in by_key.items() if len(ids) > 1} == {}  # no key made two processes
    answered = {key: r.json()["_data"] for (_, key), r in answers.items()}
    assert set(by_key) == set(answered)  # every answered create is there, and nothing else is
    for (_, key), r in answers.items():  # both clients of a key got the same process, as it is stored
        assert r.json()["_data"]["id"] == by_key[key][0]
        assert r.json()["_data"] == answered[key]
    with_score = {p["data"]["source"]: p["data"]["score"] for p in stored}
    assert with_score == {key: int(key.rsplit("-", 1)[1]) for key in answered}
