"""The worker process pool, for real: a worker that dies is replaced, the job retried."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from bot.server.jobs import process_pool_factory

from .stub_runners import MARKERS, crash_first_time
from .support import InProcessServer, make_settings, pull_request_payload, sha, wait_until

Serve = Callable[..., InProcessServer]


def test_a_dead_worker_process_is_replaced_and_the_job_retried(
    serve_app: Serve, private_key_pem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKERS, str(tmp_path))  # the spawned workers inherit it
    factory = process_pool_factory(make_settings(private_key_pem, workers=2))
    server = serve_app(crash_first_time, executor_factory=factory, workers=2, job_attempts=2)
    wait_until(lambda: server.scheduler.ready, what="the pool to warm up")
    assert (
        server.deliver(pull_request_payload(repository="octo/crash"), delivery="boom").status_code
        == 202
    )
    wait_until(lambda: server.log.records("review"), what="the job to end")
    [broken] = server.log.records("pool.broken")
    assert broken["level"] == "error"
    [retry] = server.log.records("review.retry")
    assert (retry["delivery"], retry["error"]) == ("boom", "crash")
    [done] = server.log.records("review")
    assert (done["outcome"], done["attempt"]) == ("reviewed", 2)
    assert (tmp_path / "boom").exists()
    # The new pool serves the next delivery, and the server says it is ready again.
    wait_until(lambda: server.scheduler.ready, what="the new pool to warm up")
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
    assert server.deliver(pull_request_payload(head_sha=sha("after"))).status_code == 202
    wait_until(lambda: len(server.log.records("review")) == 2)
    assert server.log.records("review")[-1]["outcome"] == "reviewed"
    assert len(server.log.records("pool.ready")) == 2
