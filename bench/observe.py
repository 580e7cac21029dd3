"""What a request's observation costs: the middleware that gives it an id, a log line (JSON, to a file) and its
place in the metrics, around a FastAPI endpoint, against the same endpoint without it, in one process.

    .venv/bin/python bench/observe.py [--requests N] [--rounds R]

Each round times N requests through each app, in turns (ASGI calls, no socket): bare, with the id and the
metrics (no log line), and with everything; the figure is the best round's µs per request, and the
difference is the middleware's cost. ``bench/create.py`` gives a create's whole cost to set it against.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from procession.api.observe import Observe
from procession.logs import configure


def app_of(observed: bool, *, access_log: bool = True) -> Any:
    app = FastAPI()

    @app.get("/v1/ext/procedure/{short}/process/{process_id}")
    async def read(short: str, process_id: str) -> dict[str, str]:
        return {"id": process_id}

    return Observe(app, access_log=access_log) if observed else app


async def timed(app: Any, n: int) -> float:
    """µs per request of ``n`` GETs through ``app``."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/v1/ext/procedure/lead/process/abc", "raw_path": b"/v1/ext/procedure/lead/process/abc",
        "query_string": b"", "root_path": "", "headers": [(b"host", b"x"), (b"x-request-id", b"bench-1")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = (Path(tmp) / "access.log").open("w")
        configure(style="json", level="INFO", stream=log)
        apps = {"bare": app_of(False), "unlogged": app_of(True, access_log=False), "observed": app_of(True)}
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(args.rounds):  # in turns, so that a slow moment of the machine falls on each
            for name, app in apps.items():
                best[name] = min(best[name], asyncio.run(timed(app, args.requests)))
        logging.shutdown()
        lines = (Path(tmp) / "access.log").read_text().count("\n")
    bare, cost = best["bare"], best["observed"] - best["bare"]
    print(f"bare endpoint:                   {bare:7.1f} µs/request")
    print(
        f"with the id and the metrics:     {best['unlogged']:7.1f} µs/request (+{best['unlogged'] - bare:.1f})"
    )
    print(
        f"and the log line (JSON, a file): {best['observed']:7.1f} µs/request (+{cost:.1f}; {lines:,} lines)"
    )
    print(f"observed / bare: {best['observed'] / bare:.2f}; the observation costs {cost:.1f} µs a request")


if __name__ == "__main__":
    main()
