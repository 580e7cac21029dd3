"""Readiness with fake writes: a full disk and any other failure are 503s naming why, a write that hangs
is cut at the deadline, and one probe runs at a time however many ask."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from procession.domain.errors import Unavailable
from procession.services import health
from procession.services.health import Readiness


def readiness(write: Any, **kwargs: Any) -> Readiness:
    return Readiness(write, sa.create_engine("sqlite://"), disk=None, workers=False, **kwargs)


async def refused(error: BaseException) -> None:
    raise error


def test_a_write_taken_is_ready() -> None:
    async def taken(probe: Any) -> None:
        return None

    assert asyncio.run(readiness(taken).check()) == {"database": "writable"}


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (
            sa.exc.OperationalError("INSERT", {}, psycopg.errors.DiskFull("x")),
            "storage_full",
            "storage is full",
        ),
        (
            sa.exc.OperationalError("INSERT", {}, psycopg.OperationalError("refused")),
            "not_ready",
            "takes no write",
        ),
    ],
)
def test_a_write_refused_is_a_503_naming_why(error: BaseException, code: str, says: str) -> None:
    with pytest.raises(Unavailable) as caught:
        asyncio.run(readiness(lambda probe: refused(error)).check())
    assert caught.value.code == code and says in caught.value.message


def test_a_disk_nearly_full_is_storage_full_before_any_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health.shutil, "disk_usage", lambda path: type("U", (), {"free": 4096})())
    probe = Readiness(refused, sa.create_engine("sqlite://"), disk=Path("."), workers=False)
    with pytest.raises(Unavailable) as caught:
        asyncio.run(probe.check())
    assert caught.value.code == "storage_full" and "4,096 bytes free" in caught.value.message


def test_a_write_that_hangs_is_cut_at_the_deadline_and_one_probe_runs_at_a_time() -> None:
    started = 0

    async def hangs(probe: Any) -> None:
        nonlocal started
        started += 1
        await asyncio.sleep(10)

    async def ask_three_times() -> list[BaseException | dict[str, Any]]:
        ready = readiness(hangs, timeout_s=0.05)
        return await asyncio.gather(*(ready.check() for _ in range(3)), return_exceptions=True)

    answers = asyncio.run(ask_three_times())
    assert all(isinstance(a, Unavailable) and "within 50 ms" in a.message for a in answers), answers
    assert started == 1
