"""Runs started in batch (the control panel): a job whose entries are runs, each entry's result its run's
outcome, written when the run finishes, in the transaction that records it."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import Any

from procession import metrics
from procession.domain.webhooks import JOB_ENDS
from procession.engine.webhooks import job_counted
from procession.store.repositories.runs import SUCCEEDED, Run
from procession.store.uow import UnitOfWork

log = logging.getLogger("procession.engine")


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
        status = uow.jobs.finish_entries(job_id, results, now)
        job_counted(uow, job_id, status, now)
        counted(uow, job_id, "run", results, status)


def counted(uow: UnitOfWork, job_id: str, kind: str, results: list[dict[str, Any]], status: str) -> None:
    """Entries given results (a chunk's, runs' of a batch) by outcome, and their job if that ended it, in the
    metrics once committed."""
    outcomes = Counter(r["b_status"] for r in results)

    def count() -> None:
        for outcome, n in outcomes.items():
            metrics.BULK_ENTRIES.labels(kind, outcome).inc(n)
        if status in JOB_ENDS:
            metrics.BULK_JOBS.labels(kind, status).inc()
            log.info("job %s %s", job_id, status.lower(), extra={"fields": {"job": job_id, "kind": kind}})

    uow.on_commit(count)
