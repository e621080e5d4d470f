"""The scheduler: which review runs when, where, and what happens when it fails.

A webhook handler calls `Scheduler.submit(job)` and answers at once; everything else happens in
the event loop's own time, so the bookkeeping needs no locks (it is only touched between awaits):

- One pull request has at most one job waiting. A job for a newer head SHA supersedes the
  waiting one, which is dropped without being reviewed; a job already running was given its head
  SHA as `expected_head_sha`, so `review_pull_request` skips it when the head has moved on. A job
  for the head already waiting or running is coalesced into it.
- At most `workers` reviews run at once (the process pool's size), at most `repo_concurrency` of
  them for one repository and one for a pull request; among the jobs allowed to start, the
  oldest starts first.
- At most `max_queued` jobs wait (queued, or waiting to retry); past that `submit` answers FULL
  and the handler answers 503 with `Retry-After`.
- A job that fails on a transient error (GitHub 5xx, rate limit, no answer, a refused token, a
  worker process that died) is retried after `retry_delay`, doubled each time, up to
  `job_attempts` tries; a broken repository config or a bug is logged and not retried.
- A worker process that dies breaks a `ProcessPoolExecutor` for good, so the pool is replaced
  (once, however many jobs saw it break) and warmed up again; `ready` is False meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import multiprocessing
import random
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from bot.github.api import GitHubError
from bot.server.auth import TokenSource
from bot.server.logs import LOGGER_NAME, log_event
from bot.server.settings import Settings
from bot.server.worker import (
    WorkerJob,
    WorkerResult,
    initialize_worker,
    review_in_worker,
    warm_up,
)

__all__ = [
    "Decision",
    "DeliveryLog",
    "ExecutorFactory",
    "Job",
    "Runner",
    "Scheduler",
    "process_pool_factory",
]

Runner = Callable[[WorkerJob], WorkerResult]
ExecutorFactory = Callable[[], Executor]

MAX_RETRY_DELAY = 300.0  # seconds
WARM_UP_RETRY = 5.0  # seconds before trying again to start a pool that would not start


class Decision(enum.Enum):
    QUEUED = "queued"  # a new job
    COALESCED = "coalesced"  # a job for this head is already waiting or running
    FULL = "full"  # the queue is full: try again later


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # to be retried
    DONE = "done"


@dataclass(eq=False)
class Job:
    """One review to do: a pull request at a head SHA, for one delivery."""

    delivery: str
    action: str
    installation_id: int
    repository: str
    number: int
    head_sha: str
    received: float = 0.0  # time.monotonic() when the delivery was accepted
    sequence: int = 0
    attempts: int = 0
    state: State = State.QUEUED
    superseded_by: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.repository.lower(), self.number)

    @property
    def repo_key(self) -> str:
        return self.repository.lower()

    def fields(self) -> dict[str, Any]:
        """What every log line about this job carries."""
        return {
            "delivery": self.delivery,
            "event": "pull_request",
            "action": self.action,
            "repository": self.repository,
            "pull_request": self.number,
            "head_sha": self.head_sha,
            "installation": self.installation_id,
        }


class DeliveryLog:
    """The last `size` delivery ids, to drop GitHub's redeliveries of one event."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __contains__(self, delivery: object) -> bool:
        return delivery in self._seen

    def remember(self, delivery: str) -> None:
        self._seen[delivery] = None
        self._seen.move_to_end(delivery)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


def process_pool_factory(settings: Settings) -> ExecutorFactory:
    """Worker processes started with `spawn`: a fresh interpreter each, never a fork of a
    process that has threads (the event loop's executor, uvicorn's)."""

    def create() -> Executor:
        return ProcessPoolExecutor(
            max_workers=settings.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initialize_worker,
            initargs=(settings.log_level,),
        )

    return create


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenSource,
        runner: Runner = review_in_worker,
        executor_factory: ExecutorFactory | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._runner = runner
        self._executor_factory = executor_factory or process_pool_factory(settings)
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._executor: Executor | None = None
        self._pool_ready = False
        self._stopping = False
        self._sequence = itertools.count(1)
        self._queues: dict[str, collections.deque[Job]] = {}  # per repository, oldest first
        self._latest: dict[tuple[str, int], Job] = {}  # per pull request: its newest job
        self._running_prs: set[tuple[str, int]] = set()
        self._running_per_repo: collections.Counter[str] = collections.Counter()
        self._running = 0
        self._queued = 0
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reviews_started = 0

    # -- state, for /readyz and the tests -----------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._executor is not None and self._pool_ready and not self._stopping

    def counts(self) -> dict[str, int]:
        return {"queued": self._queued, "running": self._running, "waiting": self._waiting}

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._executor = self._executor_factory()
        self._spawn(self._warm_up(self._executor))

    async def stop(self) -> None:
        """Drop what waits, stop waiting for what runs (a worker finishes its current review)."""
        self._stopping = True
        dropped = self._queued + self._waiting
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        log_event(self._log, logging.INFO, "server.stop", dropped_jobs=dropped)

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, job: Job) -> Decision:
        previous = self._latest.get(job.key)
        live = previous is not None and previous.state is not State.DONE
        if previous is not None and live and previous.head_sha == job.head_sha:
            return Decision.COALESCED
        frees_a_place = live and previous is not None and previous.state is not State.RUNNING
        if not frees_a_place and self._queued + self._waiting >= self._settings.max_queued:
            return Decision.FULL
        if previous is not None and live:
            self._supersede(previous, job)
        job.sequence = next(self._sequence)
        job.state = State.QUEUED
        self._latest[job.key] = job
        self._queues.setdefault(job.repo_key, collections.deque()).append(job)
        self._queued += 1
        log_event(self._log, logging.DEBUG, "review.queued", **job.fields())
        self._dispatch()
        return Decision.QUEUED

    def _supersede(self, previous: Job, job: Job) -> None:
        previous.superseded_by = job.delivery
        if previous.state is State.RUNNING:
            # It cannot be stopped in its process; it was told its head SHA and will skip.
            log_event(
                self._log,
                logging.INFO,
                "review.superseded_while_running",
                superseded_by=job.delivery,
                **previous.fields(),
            )
            return
        if previous.state is State.QUEUED:
            self._queues[previous.repo_key].remove(previous)
            if not self._queues[previous.repo_key]:
                del self._queues[previous.repo_key]
            self._queued -= 1
        else:  # WAITING: its retry finds it DONE and does nothing
            self._waiting -= 1
        previous.state = State.DONE
        log_event(
            self._log,
            logging.INFO,
            "review",
            outcome="superseded",
            superseded_by=job.delivery,
            **previous.fields(),
        )

    # -- dispatching -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stopping and self._running < self._settings.workers:
            job = self._next_job()
            if job is None:
                return
            self._queued -= 1
            self._running += 1
            self._running_per_repo[job.repo_key] += 1
            self._running_prs.add(job.key)
            job.state = State.RUNNING
            self._spawn(self._run(job))

    def _next_job(self) -> Job | None:
        """The oldest job whose repository has room and whose pull request is not running."""
        best: Job | None = None
        for repo, queue in self._queues.items():
            if self._running_per_repo[repo] >= self._settings.repo_concurrency:
                continue
            for candidate in queue:
                if candidate.key not in self._running_prs:
                    if best is None or candidate.sequence < best.sequence:
                        best = candidate
                    break
        if best is not None:
            queue = self._queues[best.repo_key]
            queue.remove(best)
            if not queue:
                del self._queues[best.repo_key]
        return best

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- running -----------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        job.attempts += 1
        self.reviews_started += 1
        started = time.monotonic()
        waited_ms = round((started - job.received) * 1000) if job.received else None
        result: WorkerResult | None = None
        try:
            result = await self._attempt(job)
        finally:
            self._running -= 1
            self._running_per_repo[job.repo_key] -= 1
            if self._running_per_repo[job.repo_key] <= 0:
                del self._running_per_repo[job.repo_key]
            self._running_prs.discard(job.key)
            duration_ms = round((time.monotonic() - started) * 1000)
            if result is None:  # cancelled: the server is stopping
                job.state = State.DONE
                log_event(self._log, logging.INFO, "review", outcome="cancelled", **job.fields())
            else:
                self._conclude(job, result, duration_ms, waited_ms)
            self._dispatch()

    async def _attempt(self, job: Job) -> WorkerResult:
        """One try; every failure becomes a result, so nothing escapes into the event loop."""
        try:
            token = await self._tokens.token(job.installation_id)
        except GitHubError as error:
            return WorkerResult("error", reason=str(error), error="github", status=error.status)
        work = WorkerJob(
            delivery=job.delivery,
            repository=job.repository,
            number=job.number,
            head_sha=job.head_sha,
            api_url=self._settings.api_url,
            token=token,
        )
        executor = self._executor
        if executor is None:
            return WorkerResult("error", reason="the server is not started", error="crash")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, self._runner, work)
        except BrokenProcessPool:
            self._replace_pool(executor)
            return WorkerResult("error", reason="a worker process died", error="crash")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a runner that raised instead of returning a result
            reason = f"{type(error).__name__}: {error}"
            return WorkerResult("error", reason=reason, error="bug", detail=traceback.format_exc())

    def _conclude(
        self, job: Job, result: WorkerResult, duration_ms: int, waited_ms: int | None
    ) -> None:
        fields = job.fields()
        fields.update(attempt=job.attempts, duration_ms=duration_ms, waited_ms=waited_ms)
        if job.superseded_by is not None:
            fields["superseded_by"] = job.superseded_by
        if result.outcome != "error":
            self._finish(job)
            log_event(
                self._log,
                logging.INFO,
                "review",
                outcome=result.outcome,
                findings=result.findings,
                comments=result.comments,
                review_id=result.review_id,
                review_url=result.review_url or None,
                reason=result.reason or None,
                **fields,
            )
            return
        if result.error == "github" and result.status == 401:
            self._tokens.forget(job.installation_id)
        error_fields = {"error": result.error, "status": result.status, "reason": result.reason}
        superseded = self._latest.get(job.key) is not job
        if (
            result.transient
            and job.attempts < self._settings.job_attempts
            and not superseded
            and not self._stopping
        ):
            delay = min(MAX_RETRY_DELAY, self._settings.retry_delay * 2 ** (job.attempts - 1))
            delay *= 1.0 + random.random() * 0.25  # jitter, not secrecy
            job.state = State.WAITING
            self._waiting += 1
            log_event(
                self._log,
                logging.WARNING,
                "review.retry",
                outcome="retrying",
                retry_in_s=round(delay, 2),
                **error_fields,
                **fields,
            )
            self._spawn(self._retry_later(job, delay))
            return
        self._finish(job)
        if superseded:
            log_event(
                self._log, logging.INFO, "review", outcome="superseded", **error_fields, **fields
            )
            return
        log_event(
            self._log,
            logging.ERROR,
            "review",
            outcome="failed",
            traceback=result.detail or None,
            **error_fields,
            **fields,
        )

    def _finish(self, job: Job) -> None:
        job.state = State.DONE
        if self._latest.get(job.key) is job:
            del self._latest[job.key]

    async def _retry_later(self, job: Job, delay: float) -> None:
        await asyncio.sleep(delay)
        if job.state is not State.WAITING or self._stopping:
            return  # superseded meanwhile
        self._waiting -= 1
        job.state = State.QUEUED
        queue = self._queues.setdefault(job.repo_key, collections.deque())
        index = next((i for i, j in enumerate(queue) if j.sequence > job.sequence), len(queue))
        queue.insert(index, job)
        self._queued += 1
        self._dispatch()

    # -- the pool ------------------------------------------------------------------------------

    def _replace_pool(self, broken: Executor) -> None:
        if broken is not self._executor or self._stopping:
            return  # another job saw the same pool break and replaced it already
        self._pool_ready = False
        broken.shutdown(wait=False, cancel_futures=True)
        log_event(self._log, logging.ERROR, "pool.broken", outcome="replacing")
        self._executor = self._executor_factory()
        self._spawn(self._warm_up(self._executor))

    async def _warm_up(self, executor: Executor) -> None:
        loop = asyncio.get_running_loop()
        while executor is self._executor and not self._stopping:
            try:
                pid = await loop.run_in_executor(executor, warm_up)
            except BrokenProcessPool:
                self._replace_pool(executor)
                return
            except Exception:
                self._log.exception("pool.warm_up_failed")
                await asyncio.sleep(WARM_UP_RETRY)
                continue
            if executor is self._executor:
                self._pool_ready = True
                log_event(self._log, logging.INFO, "pool.ready", workers=self._settings.workers)
                log_event(self._log, logging.DEBUG, "pool.worker", pid=pid)
            return
