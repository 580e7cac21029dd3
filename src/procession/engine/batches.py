"""Runs started in batch (the control panel): a job whose entries are runs, each entry's result its run's
outcome, written when the run finishes, in the transaction that records it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from procession.engine.webhooks import job_counted
from procession.store.repositories.runs import SUCCEEDED, Run
from procession.store.uow import UnitOfWork


def finish_entries(uow: UnitOfWork, runs: list[Run], now: int) -> None:
    """The job entries of runs that finished, and their jobs' progress."""
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.job_id is None or run.job_idx is None:
            continue
        ok = run.status == SUCCEEDED
        error = None if ok else [{"code": f"run_{run.status.lower()}", "message": run.error or run.status}]
        by_job[run.job_id].append(
            {"b_idx": run.job_idx, "b_status": "SUCCESS" if ok else "ERROR", "b_process": run.process_id,
             "b_error": error}
        )  # fmt: skip
    for job_id, results in by_job.items():
        job_counted(uow, job_id, uow.jobs.finish_entries(job_id, results, now), now)
