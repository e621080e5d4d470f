"""GitHub REST calls with asyncguard's retry policy, on top of PyGithub's `Requester`.

PyGithub does the transport (auth headers, GitHub Enterprise base URLs, connection reuse, the
user agent); this module decides what happens when GitHub says no:

- A rate-limit answer (429, or 403 with `retry-after`, `x-ratelimit-remaining: 0` or a "rate
  limit" message) means GitHub did not process the request, so any request, a write included, is
  sent again after the wait GitHub asks for (`retry-after`, else until `x-ratelimit-reset`). A
  wait longer than `max_wait` ends the run with a clear error rather than hanging the job.
- A 5xx or a broken connection on a read is retried with exponential backoff.
- A 5xx or a broken connection on a write is *not* retried here: GitHub may have stored the write
  before failing (it does for `POST .../reviews`), so `UncertainWrite` goes up to the caller,
  which looks at what exists before trying again. PyGithub's own urllib3 retry is switched off
  for the same reason; by default it re-sends a POST after a 502.
- Every write is recorded in `writes` as `{"method", "path", "body"}` (path relative to the API
  root). With `dry_run=True` writes are only recorded, never sent.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from github import Auth
from github.Requester import Requester

from bot import __version__

__all__ = [
    "DEFAULT_API_URL",
    "GitHubApi",
    "GitHubError",
    "RateLimitTooLong",
    "UncertainWrite",
    "WriteForbidden",
]

DEFAULT_API_URL = "https://api.github.com"
USER_AGENT = f"asyncguard/{__version__}"
READ_ATTEMPTS = 4  # the first try plus three retries, 1 s, 2 s, 4 s apart (with jitter)
RATE_LIMIT_ATTEMPTS = 5
DEFAULT_MAX_WAIT = 300.0  # seconds; a longer rate-limit wait fails the run instead
PER_PAGE = 100
JSON_MEDIA_TYPE = "application/vnd.github+json"
API_VERSION = "2022-11-28"
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class GitHubError(Exception):
    """A GitHub call failed for good; the message is one line for the user."""

    def __init__(self, message: str, status: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.data = data


class WriteForbidden(GitHubError):
    """A write was refused with 403 (not a rate limit): the token cannot write, as on forks."""


class UncertainWrite(GitHubError):
    """A write failed in a way that leaves unknown whether GitHub stored it (5xx, timeout)."""


class RateLimitTooLong(GitHubError):
    """GitHub asked to wait longer than the run is willing to."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


@dataclass
class GitHubApi:
    """One authenticated connection to a GitHub (or GitHub Enterprise) REST API."""

    auth: Auth.Auth | None
    api_url: str = DEFAULT_API_URL
    dry_run: bool = False
    max_wait: float = DEFAULT_MAX_WAIT
    timeout: int = 30
    seconds_between_writes: float | None = 1.0  # GitHub's advice for content-creating calls
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    writes: list[dict[str, Any]] = field(default_factory=list)
    _requester: Requester = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/") or DEFAULT_API_URL
        parsed = urllib.parse.urlparse(self.api_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise GitHubError(f"the GitHub API URL {self.api_url!r} is not an http(s) URL")
        self._prefix = parsed.path.rstrip("/")
        self._requester = Requester(
            auth=self.auth,
            base_url=self.api_url,
            timeout=self.timeout,
            user_agent=USER_AGENT,
            per_page=PER_PAGE,
            verify=True,
            retry=None,  # our policy, not urllib3's: see the module docstring
            pool_size=None,
            seconds_between_requests=None,
            seconds_between_writes=self.seconds_between_writes,
        )

    def clone(self) -> GitHubApi:
        """A new connection with the same settings (one per thread: PyGithub's connection
        object is not safe to share). Its writes are recorded separately."""
        return GitHubApi(
            self.auth,
            self.api_url,
            dry_run=self.dry_run,
            max_wait=self.max_wait,
            timeout=self.timeout,
            seconds_between_writes=self.seconds_between_writes,
            sleep=self.sleep,
            clock=self.clock,
        )

    # -- reads ----------------------------------------------------------------------------

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `path` (relative to the API root) and return the decoded JSON."""
        response = self._read(path, params, accept=None)
        return _decode(response, path)

    def get_optional_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """As `get_json`, but None on 404."""
        response = self._read(path, params, accept=None, allow=(404,))
        return None if response.status == 404 else _decode(response, path)

    def get_text(
        self,
        path: str,
        accept: str,
        params: Mapping[str, Any] | None = None,
        allow: tuple[int, ...] = (404,),
    ) -> Response:
        """GET `path` with a non-JSON media type (a diff, a raw file); statuses in `allow` are
        returned instead of raised."""
        return self._read(path, params, accept=accept, allow=allow)

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int | None = None
    ) -> Iterator[Any]:
        """Every item of a list endpoint, following `Link: rel="next"` (100 per page)."""
        query = {"per_page": PER_PAGE, **(params or {})}
        url: str | None = path
        count = 0
        while url is not None:
            response = self._read(url, query, accept=None)
            items = _decode(response, path)
            if not isinstance(items, list):
                raise GitHubError(f"GitHub answered GET {path} with something other than a list")
            for item in items:
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            url = _next_page(response.headers)
            query = {}  # the next link carries the query already

    # -- writes ---------------------------------------------------------------------------

    def write(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send one write (POST/PATCH/PUT/DELETE) and return the decoded JSON answer.

        Raises `WriteForbidden` on a 403 that is not a rate limit, `UncertainWrite` when GitHub
        may or may not have stored it, `GitHubError` for any other refusal (e.g. a 422).
        In dry-run mode the write is recorded and None returned.
        """
        record: dict[str, Any] = {"method": method, "path": self._relative(path)}
        if body is not None:
            record["body"] = dict(body)
        self.writes.append(record)
        if self.dry_run:
            return None
        try:
            response = self._send(method, path, None, body, accept=None)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise UncertainWrite(
                f"{method} {record['path']}: no answer from GitHub ({type(error).__name__})"
            ) from None
        if response.status >= 500:
            raise UncertainWrite(
                f"{method} {record['path']}: GitHub answered {response.status}", response.status
            )
        if response.status == 403:
            raise WriteForbidden(
                f"{method} {record['path']}: 403 {_message(response)}", 403, _safe_json(response)
            )
        if response.status >= 400:
            raise GitHubError(
                f"{method} {record['path']}: {response.status} {_message(response)}",
                response.status,
                _safe_json(response),
            )
        return _decode(response, path)

    # -- the policy -----------------------------------------------------------------------

    def _read(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        *,
        accept: str | None,
        allow: tuple[int, ...] = (),
    ) -> Response:
        delay = 1.0
        for attempt in range(READ_ATTEMPTS):
            last = attempt == READ_ATTEMPTS - 1
            try:
                response = self._send("GET", path, params, None, accept=accept)
            except (requests.ConnectionError, requests.Timeout) as error:
                if last:
                    raise GitHubError(
                        f"GET {self._relative(path)}: no answer from GitHub "
                        f"({type(error).__name__})"
                    ) from None
                self._backoff(delay)
                delay *= 2
                continue
            if response.status in allow or response.status < 400:
                return response
            if response.status >= 500 and not last:
                self._backoff(delay)
                delay *= 2
                continue
            raise GitHubError(
                f"GET {self._relative(path)}: {response.status} {_message(response)}",
                response.status,
                _safe_json(response),
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        *,
        accept: str | None,
    ) -> Response:
        """One request, repeated only while GitHub answers with a rate limit."""
        headers = {"Accept": accept or JSON_MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION}
        for _ in range(RATE_LIMIT_ATTEMPTS):
            status, response_headers, text = self._requester.requestJson(
                method, path, dict(params) if params else None, headers, body
            )
            response = Response(status, {k.lower(): v for k, v in response_headers.items()}, text)
            wait = self._rate_limit_wait(response)
            if wait is None:
                return response
            if wait > self.max_wait:
                raise RateLimitTooLong(
                    f"{method} {self._relative(path)}: GitHub's rate limit asks to wait "
                    f"{wait:.0f} s, more than the {self.max_wait:.0f} s this run allows",
                    response.status,
                )
            self.sleep(wait)
        raise GitHubError(
            f"{method} {self._relative(path)}: still rate limited after "
            f"{RATE_LIMIT_ATTEMPTS} attempts",
            429,
        )

    def _rate_limit_wait(self, response: Response) -> float | None:
        """Seconds to wait before sending the request again, None if it was not rate limited."""
        if response.status not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        limited = (
            response.status == 429
            or retry_after is not None
            or headers.get("x-ratelimit-remaining") == "0"
            or "rate limit" in _message(response).lower()
        )
        if not limited:
            return None
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        reset = headers.get("x-ratelimit-reset")
        if reset is not None:
            try:
                return max(1.0, float(reset) - self.clock() + 1.0)
            except ValueError:
                pass
        return 60.0  # GitHub's advice when it gives no time: wait at least a minute

    def _backoff(self, delay: float) -> None:
        self.sleep(delay * (1.0 + random.random() * 0.25))  # jitter, not secrecy

    def _relative(self, path: str) -> str:
        """`path` relative to the API root, without the query, as dry runs print it."""
        parsed = urllib.parse.urlparse(path)
        relative = parsed.path
        if self._prefix and relative.startswith(self._prefix + "/"):
            relative = relative[len(self._prefix) :]
        return relative


def _decode(response: Response, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise GitHubError(f"GitHub answered {path} with invalid JSON") from None


def _safe_json(response: Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: Response) -> str:
    """GitHub's error message (and the first detail), one line."""
    data = _safe_json(response)
    if not isinstance(data, dict):
        return response.text[:200].strip() or "(no message)"
    message = str(data.get("message") or "(no message)")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        detail = first.get("message") if isinstance(first, dict) else first
        if detail:
            message = f"{message}: {detail}"
    return " ".join(message.split())


def _next_page(headers: Mapping[str, str]) -> str | None:
    match = _NEXT_LINK.search(headers.get("link", ""))
    return match.group(1) if match else None


def quote_path(path: str) -> str:
    """A repository path as a URL path (each segment percent-encoded)."""
    return urllib.parse.quote(path, safe="/")
