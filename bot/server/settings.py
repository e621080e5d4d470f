"""The server's settings: the environment (and an optional `.env` file) -> a frozen `Settings`.

Every variable is `ASYNCGUARD_*` except `GITHUB_API_URL`, which is spelt as everywhere else in
asyncguard (and in GitHub Actions) so one variable points all of it at a GitHub Enterprise server.
Environment variables win over the `.env` file. A missing or malformed setting raises
`SettingsError` with one line that names the variable; `asyncguard serve` prints it and exits 2.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.github.api import DEFAULT_API_URL

__all__ = ["ENV_NAMES", "Settings", "SettingsError", "load_settings"]

MIB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Field name -> the variable a user sets; error messages name the variable, never the field.
ENV_NAMES = {
    "app_id": "ASYNCGUARD_APP_ID",
    "private_key": "ASYNCGUARD_PRIVATE_KEY",
    "private_key_file": "ASYNCGUARD_PRIVATE_KEY_FILE",
    "webhook_secret": "ASYNCGUARD_WEBHOOK_SECRET",
    "api_url": "GITHUB_API_URL",
    "host": "ASYNCGUARD_HOST",
    "port": "ASYNCGUARD_PORT",
    "workers": "ASYNCGUARD_WORKERS",
    "repo_concurrency": "ASYNCGUARD_REPO_CONCURRENCY",
    "max_queued": "ASYNCGUARD_MAX_QUEUED",
    "log_level": "ASYNCGUARD_LOG_LEVEL",
    "review_drafts": "ASYNCGUARD_REVIEW_DRAFTS",
    "max_body_bytes": "ASYNCGUARD_MAX_BODY_BYTES",
    "job_attempts": "ASYNCGUARD_JOB_ATTEMPTS",
    "retry_delay": "ASYNCGUARD_RETRY_DELAY",
}
_SECRET_FIELDS = frozenset({"private_key", "webhook_secret"})


class SettingsError(Exception):
    """A setting that stops the server from starting; the message is one line naming it."""


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, validated. Secrets are left out of `repr`."""

    app_id: int
    private_key: str = field(repr=False)  # PEM text of the App's RSA private key
    webhook_secret: bytes | None = field(repr=False)  # None only with insecure_no_signature
    api_url: str = DEFAULT_API_URL
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2  # review processes
    repo_concurrency: int = 2  # reviews of one repository at a time
    max_queued: int = 1000  # jobs waiting (queued or waiting to retry); more -> 503
    log_level: str = "info"
    review_drafts: bool = False
    max_body_bytes: int = 25 * MIB  # GitHub caps a delivery's payload at 25 MiB
    job_attempts: int = 4  # the first try plus retries on transient errors
    retry_delay: float = 10.0  # seconds before the first retry, doubled for each next one
    insecure_no_signature: bool = False


class _Environment(BaseSettings):
    """The raw variables, typed; `load_settings` checks what depends on several of them."""

    model_config = SettingsConfigDict(
        env_prefix="ASYNCGUARD_",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
        populate_by_name=False,
    )

    app_id: int | None = None
    private_key: str | None = None
    private_key_file: str | None = None
    webhook_secret: str | None = None
    api_url: str = Field(default=DEFAULT_API_URL, validation_alias="GITHUB_API_URL")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    repo_concurrency: int = 2
    max_queued: int = 1000
    log_level: str = "info"
    review_drafts: bool = False
    max_body_bytes: int = 25 * MIB
    job_attempts: int = 4
    retry_delay: float = 10.0


def load_settings(
    *,
    env_file: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    insecure_no_signature: bool = False,
) -> Settings:
    """Read and check the settings. `env_file` None reads `.env` in the current directory when
    there is one. `host`/`port` are the command line's and win over the variables."""
    if env_file is not None and not Path(env_file).is_file():
        raise SettingsError(f"--env-file: no such file: {env_file}")
    raw = _read(env_file if env_file is not None else ".env")
    if raw.app_id is None:
        raise SettingsError("ASYNCGUARD_APP_ID is not set (the GitHub App's numeric id)")
    if raw.app_id <= 0:
        raise SettingsError(f"ASYNCGUARD_APP_ID must be a positive integer, not {raw.app_id}")
    private_key = _private_key(raw)
    if raw.webhook_secret is not None:
        secret: bytes | None = raw.webhook_secret.encode()
    elif insecure_no_signature:
        secret = None
    else:
        raise SettingsError(
            "ASYNCGUARD_WEBHOOK_SECRET is not set (the GitHub App's webhook secret; "
            "--insecure-no-signature runs without one, for local experiments only)"
        )
    api_url = raw.api_url.rstrip("/")
    parsed = urllib.parse.urlparse(api_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"GITHUB_API_URL must be an http(s) URL, not {raw.api_url!r}")
    name = "ASYNCGUARD_PORT" if port is None else "--port"
    port = raw.port if port is None else port
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name} must be between 1 and 65535, not {port}")
    host = raw.host if host is None else host
    if not host:
        raise SettingsError("--host must not be empty")
    for field_name in ("workers", "repo_concurrency", "max_queued", "job_attempts"):
        value = getattr(raw, field_name)
        if value < 1:
            raise SettingsError(f"{ENV_NAMES[field_name]} must be at least 1, not {value}")
    if raw.max_body_bytes < 1024:
        raise SettingsError(
            f"ASYNCGUARD_MAX_BODY_BYTES must be at least 1024, not {raw.max_body_bytes}"
        )
    if raw.retry_delay < 0:
        raise SettingsError(f"ASYNCGUARD_RETRY_DELAY must not be negative, not {raw.retry_delay}")
    log_level = raw.log_level.lower()
    if log_level not in LOG_LEVELS:
        raise SettingsError(
            f"ASYNCGUARD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw.log_level!r}"
        )
    return Settings(
        app_id=raw.app_id,
        private_key=private_key,
        webhook_secret=secret,
        api_url=api_url,
        host=host,
        port=port,
        workers=raw.workers,
        repo_concurrency=raw.repo_concurrency,
        max_queued=raw.max_queued,
        log_level=log_level,
        review_drafts=raw.review_drafts,
        max_body_bytes=raw.max_body_bytes,
        job_attempts=raw.job_attempts,
        retry_delay=raw.retry_delay,
        insecure_no_signature=insecure_no_signature,
    )


def _read(env_file: str | Path) -> _Environment:
    try:
        # `_env_file` is pydantic-settings' own argument, which the typed signature omits.
        return _Environment(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    """The first problem of a pydantic error, as one line naming the variable."""
    first: Mapping[str, Any] = error.errors(include_url=False)[0]
    location = first.get("loc") or ("?",)
    field_name = str(location[0])
    name = ENV_NAMES.get(field_name, field_name)
    message = " ".join(str(first.get("msg", "is invalid")).split())
    if field_name in _SECRET_FIELDS:
        return f"{name}: {message}"
    return f"{name}: {message} (got {first.get('input')!r})"


def _private_key(raw: _Environment) -> str:
    """The PEM text, from the variable or the file, checked to be an RSA private key."""
    if raw.private_key is not None and raw.private_key_file is not None:
        raise SettingsError(
            "set only one of ASYNCGUARD_PRIVATE_KEY and ASYNCGUARD_PRIVATE_KEY_FILE"
        )
    if raw.private_key is not None:
        name = "ASYNCGUARD_PRIVATE_KEY"
        text = raw.private_key.strip()
        if "\n" not in text and "\\n" in text:  # a one-line PEM with escaped newlines
            text = text.replace("\\n", "\n")
    elif raw.private_key_file is not None:
        name = "ASYNCGUARD_PRIVATE_KEY_FILE"
        try:
            text = Path(raw.private_key_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise SettingsError(f"{name}: cannot read {raw.private_key_file}: {reason}") from None
    else:
        raise SettingsError(
            "ASYNCGUARD_PRIVATE_KEY (PEM text) or ASYNCGUARD_PRIVATE_KEY_FILE is not set "
            "(the GitHub App's private key)"
        )
    _check_rsa_key(name, text)
    return text + "\n"


def _check_rsa_key(name: str, text: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as error:
        reason = "it is encrypted" if isinstance(error, TypeError) else "not a PEM private key"
        raise SettingsError(f"{name}: cannot load the private key ({reason})") from None
    except Exception:  # cryptography's UnsupportedAlgorithm and friends
        raise SettingsError(f"{name}: cannot load the private key (unsupported)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SettingsError(f"{name}: the private key is not an RSA key (GitHub Apps use RSA)")
