"""Runs started in batch (the control panel): a job whose entries are runs."""

from __future__ import annotations

from procession.store.repositories.runs import Run
from procession.store.uow import UnitOfWork


def finish_entries(uow: UnitOfWork, runs: list[Run], now: int) -> None:
    """The job entries of runs that finished: each entry's result is its run's outcome."""
