"""The FastAPI application: `POST /webhook`, `GET /healthz`, `GET /readyz`.

A delivery goes through these checks in order, and the first that fails answers:

1. `Content-Length` over the limit: 413, before a byte of the body is read.
2. `X-GitHub-Event`, `X-GitHub-Delivery` or `X-Hub-Signature-256` missing: 400.
3. The body, read as a stream and counted: 413 as soon as it passes the limit (a chunked
   request has no `Content-Length` to trust).
4. The signature, HMAC-SHA256 of the raw bytes, compared in constant time: 401.
5. A delivery id already handled (GitHub's redelivery of one event): 200, nothing new.
6. The JSON: 400 when it does not parse or lacks what the event needs.
7. The event: `ping` 200; `pull_request` opened / synchronize / reopened / ready_for_review 202,
   the review queued (a draft 204 unless `ASYNCGUARD_REVIEW_DRAFTS`); anything else 204. A full
   queue answers 503 with `Retry-After`, and the delivery is not remembered, so GitHub's
   redelivery is accepted later.

Every answer is logged as one `delivery` line. The handler never waits for a review.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from bot.server import signature
from bot.server.auth import InstallationTokens, TokenSource
from bot.server.jobs import Decision, DeliveryLog, ExecutorFactory, Job, Runner, Scheduler
from bot.server.logs import LOGGER_NAME, log_event
from bot.server.settings import Settings
from bot.server.worker import review_in_worker

__all__ = ["REVIEWED_ACTIONS", "create_app"]

REVIEWED_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
RETRY_AFTER = "60"  # seconds, when the queue is full
OFF_LOOP_BYTES = 1024 * 1024  # hash and parse bodies larger than this in a thread
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_T = TypeVar("_T")


class _BadPayload(Exception):
    """The JSON is valid but not the event it claims to be; the message says what is missing."""


def create_app(
    settings: Settings,
    *,
    runner: Runner = review_in_worker,
    executor_factory: ExecutorFactory | None = None,
    tokens: TokenSource | None = None,
    logger: logging.Logger | None = None,
) -> FastAPI:
    """The server for `settings`. `runner` (the review, run in the pool `executor_factory`
    makes), `tokens` and `logger` are replaceable for tests and benchmarks."""
    if settings.webhook_secret is None and not settings.insecure_no_signature:
        raise ValueError("a webhook secret is required unless insecure_no_signature is set")
    log = logger or logging.getLogger(LOGGER_NAME)
    token_source = tokens or InstallationTokens(
        settings.app_id, settings.private_key, settings.api_url
    )
    scheduler = Scheduler(
        settings,
        tokens=token_source,
        runner=runner,
        executor_factory=executor_factory,
        logger=log,
    )
    deliveries = DeliveryLog()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.insecure_no_signature:
            log_event(log, logging.WARNING, "server.insecure", reason=_INSECURE)
        log_event(
            log,
            logging.INFO,
            "server.start",
            app_id=settings.app_id,
            api_url=settings.api_url,
            workers=settings.workers,
            repo_concurrency=settings.repo_concurrency,
            max_queued=settings.max_queued,
        )
        await scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()

    app = FastAPI(
        title="asyncguard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.deliveries = deliveries
    app.state.tokens = token_source

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = scheduler.ready
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", **scheduler.counts()}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        started = time.monotonic()
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        fields: dict[str, Any] = {
            "delivery": delivery or None,
            "event": event or None,
            # The sender's address; behind a proxy, uvicorn takes it from X-Forwarded-For when
            # the proxy is in FORWARDED_ALLOW_IPS.
            "client": request.client.host if request.client else None,
        }

        def answer(status: int, outcome: str, **extra: Any) -> Response:
            fields.update(extra)
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            level = logging.WARNING if status in (401, 413, 503) else logging.INFO
            log_event(
                log,
                level,
                "delivery",
                status=status,
                outcome=outcome,
                duration_ms=duration_ms,
                **fields,
            )
            if status == 204:
                return Response(status_code=204)
            key = "outcome" if status < 400 else "error"
            headers = {"Retry-After": RETRY_AFTER} if status == 503 else None
            return JSONResponse({key: outcome}, status_code=status, headers=headers)

        if settings.insecure_no_signature:
            log_event(log, logging.WARNING, "delivery.unsigned", reason=_INSECURE, **fields)
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return answer(400, "Content-Length is not a number")
            if int(declared) > limit:
                return answer(413, f"the body is over {limit} bytes")
        header = request.headers.get("x-hub-signature-256")
        missing = [
            name
            for name, value in (
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", header or settings.insecure_no_signature),
            )
            if not value
        ]
        if missing:
            return answer(400, f"missing header: {', '.join(missing)}")
        if len(delivery) > 200:
            return answer(400, "X-GitHub-Delivery is too long")
        try:
            body = await _read_body(request, limit)
        except ClientDisconnect:
            return answer(400, "the client went away before sending the body")
        if body is None:
            return answer(413, f"the body is over {limit} bytes")
        secret = settings.webhook_secret
        if not settings.insecure_no_signature:
            valid = (
                secret is not None
                and header is not None
                and await _off_loop(len(body), signature.verify, secret, body, header)
            )
            if not valid:
                return answer(401, "the signature does not match")
        if delivery in deliveries:
            return answer(200, "duplicate")
        try:
            payload = await _off_loop(len(body), json.loads, body)
        except (ValueError, RecursionError):
            return answer(400, "the body is not JSON")
        if not isinstance(payload, dict):
            return answer(400, "the body is not a JSON object")
        if event == "ping":
            deliveries.remember(delivery)
            return answer(200, "pong", hook_id=payload.get("hook_id"))
        if event != "pull_request":
            deliveries.remember(delivery)
            return answer(204, "ignored")
        try:
            job, draft = _pull_request_job(payload, delivery)
        except _BadPayload as error:
            return answer(400, str(error))
        fields.update(job.fields())
        if job.action not in REVIEWED_ACTIONS:
            deliveries.remember(delivery)
            return answer(204, "ignored")
        if draft and not settings.review_drafts:
            deliveries.remember(delivery)
            return answer(204, "draft")
        job.received = time.monotonic()
        decision = scheduler.submit(job)
        if decision is Decision.FULL:
            return answer(503, "the queue is full", **scheduler.counts())
        deliveries.remember(delivery)
        return answer(202, decision.value)

    return app


_INSECURE = "--insecure-no-signature: deliveries are not verified; anyone can trigger reviews"


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _off_loop(size: int, function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)`, in a thread when the body is large enough to hold up the loop."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _pull_request_job(payload: dict[str, Any], delivery: str) -> tuple[Job, bool]:
    """The job a `pull_request` delivery asks for, and whether the pull request is a draft."""
    action = payload.get("action")
    if not isinstance(action, str):
        raise _BadPayload("the payload has no action")
    installation = _object(payload, "installation")
    installation_id = installation.get("id")
    if not isinstance(installation_id, int) or isinstance(installation_id, bool):
        raise _BadPayload("the payload has no installation.id (is this a GitHub App's webhook?)")
    repository = _object(payload, "repository").get("full_name")
    if not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository):
        raise _BadPayload("the payload has no repository.full_name")
    pull_request = _object(payload, "pull_request")
    number = pull_request.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
        raise _BadPayload("the payload has no pull_request.number")
    head_sha = _object(pull_request, "head", "pull_request.head").get("sha")
    if not isinstance(head_sha, str) or not _SHA.fullmatch(head_sha):
        raise _BadPayload("the payload has no pull_request.head.sha")
    job = Job(
        delivery=delivery,
        action=action,
        installation_id=installation_id,
        repository=repository,
        number=number,
        head_sha=head_sha,
    )
    return job, pull_request.get("draft") is True


def _object(data: dict[str, Any], key: str, name: str | None = None) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _BadPayload(f"the payload has no {name or key} object")
    return value
