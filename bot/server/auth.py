"""GitHub App authentication: the App's JWT, then one installation token per installation.

The JWT (RS256, signed with the App's private key) says "I am App N"; it is issued 60 s in the
past to allow for clock drift and expires 9 minutes later (GitHub refuses more than 10). With it,
`POST /app/installations/{id}/access_tokens` returns a token for that installation's
repositories, valid for an hour. Tokens are cached per installation and minted again once less
than `refresh_margin` (5 minutes) is left, so a review never starts with a token about to expire.

The HTTP call blocks, so it runs in a thread; one lock per installation makes concurrent jobs of
one installation share one mint. Tokens are never logged; `repr` of a token hides it.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import jwt
import requests

from bot.github.api import USER_AGENT, GitHubError

__all__ = ["InstallationTokens", "TokenSource", "app_jwt"]

JWT_BACKDATE = 60  # seconds; GitHub's advice against clock drift
JWT_LIFETIME = 540  # seconds after `now`; GitHub accepts at most 600
REFRESH_MARGIN = 300.0  # mint a new token when less than this is left
TIMEOUT = 30


class TokenSource(Protocol):
    """What the scheduler needs: a token for an installation, and a way to drop a bad one."""

    async def token(self, installation_id: int) -> str: ...

    def forget(self, installation_id: int) -> None: ...


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float  # seconds since the epoch


def app_jwt(app_id: int, private_key: str, now: float) -> str:
    """The App's JWT at time `now` (seconds since the epoch)."""
    issued = int(now) - JWT_BACKDATE
    payload = {"iat": issued, "exp": int(now) + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(payload, private_key, algorithm="RS256")


class InstallationTokens:
    """Installation tokens of one GitHub App, minted on demand and cached until near expiry."""

    def __init__(
        self,
        app_id: int,
        private_key: str,
        api_url: str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self._app_id = app_id
        self._private_key = private_key
        self._api_url = api_url.rstrip("/")
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._cache: dict[int, _Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.minted = 0  # how many tokens were minted (for the logs and the tests)

    def __repr__(self) -> str:
        return f"InstallationTokens(app_id={self._app_id}, api_url={self._api_url!r})"

    async def token(self, installation_id: int) -> str:
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(installation_id)  # minted while this job waited for the lock
            if cached is not None:
                return cached
            minted = await asyncio.to_thread(self._mint, installation_id)
            self._cache[installation_id] = minted
            self.minted += 1
            return minted.value

    def forget(self, installation_id: int) -> None:
        """Drop the cached token (GitHub answered 401 with it: revoked, or the App reinstalled)."""
        self._cache.pop(installation_id, None)

    def _fresh(self, installation_id: int) -> str | None:
        cached = self._cache.get(installation_id)
        if cached is None or cached.expires_at - self._refresh_margin <= self._clock():
            return None
        return cached.value

    def _mint(self, installation_id: int) -> _Token:
        """One `POST /app/installations/{id}/access_tokens` (blocking; runs in a thread)."""
        path = f"/app/installations/{installation_id}/access_tokens"
        headers = {
            "Authorization": f"Bearer {app_jwt(self._app_id, self._private_key, self._clock())}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": USER_AGENT,
        }
        try:
            response = requests.post(self._api_url + path, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise GitHubError(
                f"POST {path}: no answer from GitHub ({type(error).__name__})"
            ) from None
        if response.status_code >= 400:
            raise GitHubError(
                f"POST {path}: {response.status_code} {_message(response)}", response.status_code
            )
        try:
            data = response.json()
            value = str(data["token"])
            expires_at = _timestamp(str(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            raise GitHubError(f"POST {path}: GitHub's answer has no token and expiry") from None
        return _Token(value, expires_at)


def _timestamp(text: str) -> float:
    """`2016-07-11T22:14:10Z` (Python 3.10's `fromisoformat` does not read the `Z`)."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or "(no message)"
    message = data.get("message") if isinstance(data, dict) else None
    return " ".join(str(message or "(no message)").split())
