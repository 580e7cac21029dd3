"""Log lines (JSON and logfmt, masked), request ids, and rate limits counted in memory: no database."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import time
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from procession.api.limits import Limited, RateLimits, headers
from procession.api.observe import request_id_of
from procession.logs import REQUEST_ID, Structured, configure, masked

PLAIN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    made = logging.getLogger("procession.test").makeRecord(
        "procession.test", logging.INFO, __file__, 1, message, args, None
    )
    made.fields = fields
    return made


def test_a_json_line_names_the_request_the_record_was_made_in() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        made = record("job %s done", "j1", job="j1", count=3)
    finally:
        REQUEST_ID.reset(token)
    line = orjson.loads(Structured("json").format(made))  # formatted later, outside the request
    assert line["msg"] == "job j1 done" and line["request_id"] == "req-1"
    assert line["job"] == "j1" and line["count"] == 3 and line["level"] == "info"


def test_a_logfmt_line_quotes_what_needs_it() -> None:
    line = Structured("logfmt").format(record("a message", route="/v1/x/{id}", team=None, status=200))
    assert 'msg="a message"' in line and "route=/v1/x/{id}" not in line
    assert 'route="/v1/x/{id}"' in line and "status=200" in line and "team=None" in line


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """``configure`` to a StringIO; the root logger and logging's switches as they were, afterwards."""
    root, stream = logging.getLogger(), io.StringIO()
    handlers, level, srcfile = list(root.handlers), root.level, logging._srcfile
    switches = logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    configure(style="auto", level="INFO", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging._srcfile = srcfile
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = switches


def test_auto_is_logfmt_on_a_terminal_and_json_elsewhere(configured: io.StringIO) -> None:
    logging.getLogger("procession.test").info("hello")
    logging.getLogger().handlers[0].flush()
    assert orjson.loads(configured.getvalue())["msg"] == "hello"  # a StringIO is no terminal
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING  # URLs of calls not logged


def test_lines_are_written_together_a_warning_at_once_and_the_rest_soon(configured: io.StringIO) -> None:
    log = logging.getLogger("procession.test")
    log.info("first")
    log.info("second")
    assert configured.getvalue() == ""  # gathered, not yet written
    log.warning("third")  # written at once, after the lines before it
    assert [orjson.loads(line)["msg"] for line in configured.getvalue().splitlines()] == [
        "first",
        "second",
        "third",
    ]
    log.info("fourth")
    deadline = time.monotonic() + 5
    while "fourth" not in configured.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert orjson.loads(configured.getvalue().splitlines()[-1])["msg"] == "fourth"  # by the flushing thread


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer prk_abcdefghijklmnopqrstuvwxyz0123",
        "sent with prk_abcdefghijklmnopqrstuvwxyz0123 in it",
        "password=hunter2-correct-horse",
        '{"password": "hunter2-correct-horse"}',
        "token=hunter2-correct-horse&x=1",
        "api_key: hunter2-correct-horse",
        "client_secret='hunter2-correct-horse'",
    ],
)
def test_a_credential_quoted_by_accident_is_masked(text: str) -> None:
    shown = masked(text)
    assert "hunter2-correct-horse" not in shown and "abcdefghijklmnop" not in shown and "***" in shown
    line = Structured("json").format(record(text))
    assert "hunter2" not in line and "abcdefghijklmnop" not in line


def test_an_exception_s_text_is_masked_too() -> None:
    try:
        raise ValueError("could not sign in: password=hunter2-correct-horse")
    except ValueError:
        import sys

        made = record("failed")
        made.exc_info = sys.exc_info()
    assert "hunter2" not in Structured("json").format(made)


@given(st.binary(max_size=100))
def test_a_client_s_request_id_is_kept_only_when_it_is_a_plain_token(sent: bytes) -> None:
    got = request_id_of([(b"x-request-id", sent)])
    assert PLAIN.fullmatch(got)
    kept = sent.decode("latin-1")
    assert (got == kept) == bool(PLAIN.fullmatch(kept))


def test_without_a_request_id_one_is_made_fresh_each_time() -> None:
    ids = {request_id_of([(b"accept", b"*/*")]) for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_a_forked_process_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, request_id_of([]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read), os.close(write)
    mine = request_id_of([])
    assert re.fullmatch(r"[0-9a-f]{16}", child) and child[:8] != mine[:8]


def test_a_key_s_limit_counts_down_then_refuses_with_when_to_retry() -> None:
    limits = RateLimits("3/minute", None, "memory://")

    async def go() -> list[object]:
        out: list[object] = []
        for _ in range(4):
            try:
                out.append(await limits.count(key_id="k1", team_id="t1"))
            except Limited as e:
                out.append(e)
        return out

    first, second, third, refused = asyncio.run(go())
    assert [s.remaining for s in (first, second, third)] == [2, 1, 0]  # type: ignore[attr-defined]
    assert isinstance(refused, Limited) and refused.standing.remaining == 0 and refused.standing.limit == 3
    assert 1 <= refused.retry_after <= 60
    assert dict(headers(refused.standing))[b"ratelimit-limit"] == b"3"


def test_the_tightest_limit_is_the_one_told_and_a_team_s_is_shared_by_its_keys() -> None:
    limits = RateLimits("10/minute", "3/minute", "memory://")

    async def go() -> list[object]:
        out: list[object] = []
        for key in ("a", "b", "c", "d"):
            try:
                out.append(await limits.count(key_id=key, team_id="team"))
            except Limited as e:
                out.append(e)
        out.append(await limits.count(key_id="e", team_id="other team"))
        return out

    *kept, refused, other = asyncio.run(go())
    assert [s.limit for s in kept] == [3, 3, 3]  # type: ignore[attr-defined]
    assert isinstance(refused, Limited) and other.remaining == 2  # type: ignore[attr-defined]


def test_several_limits_for_one_key() -> None:
    limits = RateLimits("2/second;100/hour", None, "memory://")

    async def go() -> object:
        await limits.count(key_id="k", team_id="t")
        return await limits.count(key_id="k", team_id="t")

    standing = asyncio.run(go())
    assert standing.limit == 2 and standing.remaining == 0  # type: ignore[attr-defined]
