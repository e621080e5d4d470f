"""Helpers for the webhook server's tests: signed deliveries, a server on 127.0.0.1, stand-ins
for the review and the token source (the fixtures that use them are in `conftest.py`).

Two ways to run the server, both real uvicorn on a free port of 127.0.0.1:

- `serve_app` (in this process, uvicorn in a thread): `create_app` with a `Recorder` instead of
  the review, run in threads, and `StaticTokens` instead of GitHub; for what the server decides
  (status codes, which jobs run, retries, the queue), observed exactly.
- `ServerProcess` (`python -m bot.server.main`, as in production): the real review in worker
  processes, talking to `FakeGitHub`; for what GitHub receives (`test_e2e.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from bot.github.api import GitHubError
from bot.server.app import create_app
from bot.server.logs import JsonFormatter
from bot.server.settings import Settings
from bot.server.signature import sign
from bot.server.worker import WorkerJob, WorkerResult

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = Path(__file__).resolve().parent / "payloads"
REFERENCE_WEBHOOKS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "webhooks"
SECRET = "it's a secret to everybody"
TIMEOUT = 30.0
SERVE = (sys.executable, "-m", "bot.server.main")
CLI_SERVE = (sys.executable, "-m", "bot", "serve")  # `asyncguard serve`


# -- deliveries ------------------------------------------------------------------------------------


def own_payload() -> dict[str, Any]:
    """The `pull_request` `synchronize` delivery kept with the tests (octo/app#7, installation 42)."""
    data: dict[str, Any] = json.loads((PAYLOADS / "pull_request.synchronize.json").read_text())
    return data


def reference_payload(name: str) -> dict[str, Any]:
    """One of GitHub's example deliveries from ../shared; skips the test when it is absent."""
    path = REFERENCE_WEBHOOKS / name
    if not path.is_file():
        pytest.skip(f"the reference payloads are not here ({REFERENCE_WEBHOOKS})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def pull_request_payload(
    *,
    action: str = "synchronize",
    repository: str = "octo/app",
    number: int = 7,
    head_sha: str | None = None,
    draft: bool = False,
    installation: int = 42,
) -> dict[str, Any]:
    """`own_payload()` changed to say other things."""
    data = own_payload()
    data["action"] = action
    data["number"] = number
    pull = data["pull_request"]
    pull["number"] = number
    pull["draft"] = draft
    if head_sha is not None:
        pull["head"]["sha"] = head_sha
        data["after"] = head_sha
    data["repository"]["full_name"] = repository
    pull["base"]["repo"]["full_name"] = repository
    data["installation"]["id"] = installation
    return data


def sha(seed: str) -> str:
    """A 40-hex head SHA made from `seed`."""
    return uuid.uuid5(uuid.NAMESPACE_URL, seed).hex + uuid.uuid5(uuid.NAMESPACE_DNS, seed).hex[:8]


def encode(payload: Mapping[str, Any] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":")).encode()


def github_headers(
    body: bytes,
    event: str = "pull_request",
    delivery: str | None = None,
    secret: str | None = SECRET,
) -> dict[str, str]:
    """The headers GitHub sends with `body`, signed with `secret` (None: unsigned)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/5f1c2a3",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4242",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": "4242",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret.encode(), body)
    return headers


def deliver(
    url: str,
    payload: Mapping[str, Any] | bytes,
    event: str = "pull_request",
    delivery: str | None = None,
    *,
    secret: str | None = SECRET,
    headers: Mapping[str, str | None] | None = None,
) -> requests.Response:
    """POST one delivery to `url` (the server's root), as GitHub would; `headers` overrides
    (a None value removes the header)."""
    body = encode(payload)
    sent = github_headers(body, event, delivery, secret)
    for name, value in (headers or {}).items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    return requests.post(f"{url}/webhook", data=body, headers=sent, timeout=TIMEOUT)


# -- waiting -----------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- keys and settings ---------------------------------------------------------------------------------


def make_settings(private_key: str, **overrides: Any) -> Settings:
    base = Settings(
        app_id=4242,
        private_key=private_key,
        webhook_secret=SECRET.encode(),
        api_url="https://github.invalid/api/v3",
        workers=2,
        repo_concurrency=2,
        max_queued=100,
        job_attempts=3,
        retry_delay=0.01,
    )
    return replace(base, **overrides)


# -- stand-ins for the review and GitHub -----------------------------------------------------------------


@dataclass
class Recorder:
    """The review, replaced: records each job, answers from `script` (by call, then `reviewed`),
    and holds every call while `gate` is clear."""

    script: list[WorkerResult | Exception] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    jobs: list[WorkerJob] = field(default_factory=list)
    finished: list[WorkerJob] = field(default_factory=list)
    running: int = 0
    most_running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()

    def __call__(self, job: WorkerJob) -> WorkerResult:
        with self._lock:
            self.jobs.append(job)
            answer = self.script.pop(0) if self.script else None
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if not self.gate.wait(TIMEOUT):
                raise AssertionError("the gate was never opened")
            if isinstance(answer, Exception):
                raise answer
            return answer or WorkerResult("reviewed", findings=2, comments=2, review_id=1)
        finally:
            with self._lock:
                self.running -= 1
                self.finished.append(job)

    def heads(self) -> list[str]:
        return [job.head_sha for job in self.jobs]


class StaticTokens:
    """A token source that never asks GitHub: `ghs_static_N`, or the errors in `failures`."""

    def __init__(self, failures: list[GitHubError] | None = None) -> None:
        self.failures = list(failures or [])
        self.asked: list[int] = []
        self.forgotten: list[int] = []
        self.generation = 1

    async def token(self, installation_id: int) -> str:
        self.asked.append(installation_id)
        if self.failures:
            raise self.failures.pop(0)
        return f"ghs_static_{self.generation}"

    def forget(self, installation_id: int) -> None:
        self.forgotten.append(installation_id)
        self.generation += 1


class LogCapture(logging.Handler):
    """The server's log lines, formatted as in production and parsed back."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lock2:
            self.lines.append(line)

    def records(self, msg: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self._lock2:
            parsed = [json.loads(line) for line in self.lines]
        return [
            record
            for record in parsed
            if (msg is None or record["msg"] == msg)
            and all(record.get(key) == value for key, value in match.items())
        ]


# -- the server in this process ---------------------------------------------------------------------------


class InProcessServer:
    """`create_app(settings, ...)` served by uvicorn in a thread on a free port."""

    def __init__(
        self,
        settings: Settings,
        runner: Callable[[WorkerJob], WorkerResult],
        tokens: Any,
        executor_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.log = LogCapture()
        logger = logging.getLogger(f"asyncguard.test.{uuid.uuid4().hex}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self.log)
        self.settings = settings
        self.app = create_app(
            settings,
            runner=runner,
            tokens=tokens,
            executor_factory=executor_factory
            or (lambda: ThreadPoolExecutor(settings.workers, thread_name_prefix="review")),
            logger=logger,
        )
        self.scheduler = self.app.state.scheduler
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn to start")

    def deliver(self, payload: Mapping[str, Any] | bytes, *args: Any, **kwargs: Any) -> Any:
        return deliver(self.url, payload, *args, **kwargs)

    def idle(self) -> bool:
        return not any(self.scheduler.counts().values())

    def wait_idle(self) -> None:
        wait_until(self.idle, what="the scheduler to finish its jobs")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT)


# -- the server as in production: `python -m bot.server.main` ------------------------------------------------


class ServerProcess:
    """`python -m bot.server.main --host 127.0.0.1 --port N` (or another `command`, such as
    `CLI_SERVE`) with `env`; its stdout (JSON lines) and stderr go to `log_path`."""

    def __init__(
        self, env: Mapping[str, str], cwd: Path, *args: str, command: Sequence[str] = SERVE
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"server-{self.port}.log"
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=cwd,
            env=dict(env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.output()}")
            with contextlib.suppress(requests.ConnectionError):
                return requests.get(f"{self.url}/readyz", timeout=5).status_code == 200
            return False

        wait_until(ready, what=f"the server to be ready; output:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self, msg: str | None = None, **match: Any) -> list[dict[str, Any]]:
        found = []
        text = self.output()
        # The server may be writing the last line right now: only whole lines count.
        complete = text[: text.rfind("\n") + 1]
        for line in complete.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if (msg is None or record.get("msg") == msg) and all(
                record.get(key) == value for key, value in match.items()
            ):
                found.append(record)
        return found

    def wait_for(self, msg: str, **match: Any) -> dict[str, Any]:
        wait_until(
            lambda: self.records(msg, **match),
            what=f"a {msg} line with {match}; output:\n{self.output()}",
        )
        return self.records(msg, **match)[-1]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self._log_file.close()


def server_env(home: Path, **settings: str) -> dict[str, str]:
    """A clean environment for the server process: no inherited ASYNCGUARD_/GITHUB_ variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASYNCGUARD_", "GITHUB_", "GIT_", "PYTHON"))
    }
    env.update(
        {
            "HOME": str(home),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    env.update(settings)
    return env
