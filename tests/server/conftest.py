"""Fixtures for the webhook server's tests; the helpers they use are in `support.py`.

`tests/server` is a package (it has an `__init__.py`) so that this file is not imported as the
top-level module `conftest`, which is `tests/conftest.py`'s name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.server.worker import WorkerJob, WorkerResult

from .support import InProcessServer, Recorder, StaticTokens, make_settings


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    """A fresh 2048-bit RSA key, as GitHub gives an App (PKCS#1 PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def serve_app(
    private_key_pem: str,
) -> Iterator[Callable[..., InProcessServer]]:
    """`serve_app(runner=..., tokens=..., **settings)` starts an in-process server."""
    started: list[tuple[InProcessServer, Any]] = []

    def start(
        runner: Callable[[WorkerJob], WorkerResult] | None = None,
        tokens: Any = None,
        executor_factory: Callable[[], Any] | None = None,
        **overrides: Any,
    ) -> InProcessServer:
        settings = make_settings(private_key_pem, **overrides)
        runner = runner or Recorder()
        server = InProcessServer(settings, runner, tokens or StaticTokens(), executor_factory)
        started.append((server, runner))
        return server

    yield start
    for server, runner in started:
        if isinstance(runner, Recorder):
            runner.gate.set()
        server.close()
