"""Runners for tests that need a real worker process (they must be importable by name there)."""

from __future__ import annotations

import os
from pathlib import Path

from bot.server.worker import WorkerJob, WorkerResult

MARKERS = "ASYNCGUARD_TEST_MARKERS"


def crash_first_time(job: WorkerJob) -> WorkerResult:
    """Kills its worker process the first time it sees a delivery (a segfault, the OOM killer),
    reviews it the second time."""
    marker = Path(os.environ[MARKERS]) / job.delivery
    if job.repository == "octo/crash" and not marker.exists():
        marker.touch()
        os._exit(1)
    return WorkerResult("reviewed", findings=1, reason=str(os.getpid()))
