"""The App's JWT, installation tokens (GitHub mocked with `responses`, in this process) and the
signature check."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bot.github.api import GitHubError
from bot.server.auth import InstallationTokens, app_jwt
from bot.server.signature import sign, verify

API = "https://ghe.example.com/api/v3"
TOKENS_URL = f"{API}/app/installations/42/access_tokens"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def public_key(private_key_pem: str) -> Any:
    return load_pem_private_key(private_key_pem.encode(), password=None).public_key()


# -- the signature ---------------------------------------------------------------------------------


def test_the_signature_is_githubs() -> None:
    # The example of GitHub's documentation ("Validating webhook deliveries").
    header = sign(b"It's a Secret to Everybody", b"Hello, World!")
    assert header == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify(b"It's a Secret to Everybody", b"Hello, World!", header)
    assert not verify(b"It's a Secret to Everybody", b"Hello, World?", header)
    assert not verify(b"another secret", b"Hello, World!", header)
    assert not verify(b"It's a Secret to Everybody", b"Hello, World!", header.upper())
    assert not verify(b"It's a Secret to Everybody", b"Hello, World!", "sha256=\udcff")
    assert not verify(b"It's a Secret to Everybody", b"Hello, World!", "")


# -- the JWT -------------------------------------------------------------------------------------------


def test_the_app_jwt(private_key_pem: str) -> None:
    now = 1_700_000_000.7
    token = app_jwt(4242, private_key_pem, now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(
        token,
        public_key(private_key_pem),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {"iat": 1_700_000_000 - 60, "exp": 1_700_000_000 + 540, "iss": "4242"}
    assert claims["exp"] - claims["iat"] <= 600  # GitHub's limit


# -- installation tokens -----------------------------------------------------------------------------------


def mint_callback(clock: Clock, lifetime: float = 3600) -> Any:
    issued = 0

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        nonlocal issued
        issued += 1
        body = {"token": f"ghs_minted{issued}", "expires_at": iso(clock.now + lifetime)}
        return 201, {"Content-Type": "application/json"}, json.dumps(body)

    return answer


@responses.activate
def test_a_token_is_minted_once_and_reused_until_shortly_before_it_expires(
    private_key_pem: str,
) -> None:
    clock = Clock(1_700_000_000)
    responses.add_callback(responses.POST, TOKENS_URL, callback=mint_callback(clock))
    tokens = InstallationTokens(4242, private_key_pem, API + "/", clock=clock)

    async def scenario() -> list[str]:
        seen = [await tokens.token(42)]
        clock.now += 3000  # 10 minutes left: still good
        seen.append(await tokens.token(42))
        clock.now += 301  # less than 5 minutes left: a new one
        seen.append(await tokens.token(42))
        return seen

    assert asyncio.run(scenario()) == ["ghs_minted1", "ghs_minted1", "ghs_minted2"]
    assert len(responses.calls) == 2
    request = responses.calls[0].request
    assert request.headers["Accept"] == "application/vnd.github+json"
    scheme, _, token = str(request.headers["Authorization"]).partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(
        token,
        public_key(private_key_pem),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "4242"
    assert "ghs_minted" not in repr(tokens)


@responses.activate
def test_concurrent_jobs_of_one_installation_share_one_mint(private_key_pem: str) -> None:
    clock = Clock(1_700_000_000)
    responses.add_callback(responses.POST, TOKENS_URL, callback=mint_callback(clock))
    responses.add_callback(
        responses.POST, f"{API}/app/installations/43/access_tokens", callback=mint_callback(clock)
    )
    tokens = InstallationTokens(4242, private_key_pem, API, clock=clock)

    async def scenario() -> list[str]:
        return await asyncio.gather(*(tokens.token(i) for i in (42, 42, 43, 42, 43)))

    assert asyncio.run(scenario()) == ["ghs_minted1"] * 2 + ["ghs_minted1"] + ["ghs_minted1"] * 2
    assert len(responses.calls) == 2  # one per installation
    assert tokens.minted == 2


@responses.activate
def test_a_forgotten_token_is_minted_again(private_key_pem: str) -> None:
    clock = Clock(1_700_000_000)
    responses.add_callback(responses.POST, TOKENS_URL, callback=mint_callback(clock))
    tokens = InstallationTokens(4242, private_key_pem, API, clock=clock)

    async def scenario() -> list[str]:
        first = await tokens.token(42)
        tokens.forget(42)
        return [first, await tokens.token(42)]

    assert asyncio.run(scenario()) == ["ghs_minted1", "ghs_minted2"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            500,
            {"message": "Server Error"},
            "POST /app/installations/42/access_tokens: 500 Server Error",
        ),
        (404, {"message": "Not Found"}, "POST /app/installations/42/access_tokens: 404 Not Found"),
        (401, {"message": "A JSON web token could not be decoded"}, "401 A JSON web token"),
        (201, {"token": "ghs_x"}, "GitHub's answer has no token and expiry"),
    ],
)
@responses.activate
def test_a_failed_mint_is_a_github_error_with_its_status(
    private_key_pem: str, status: int, body: dict[str, str], message: str
) -> None:
    responses.add(responses.POST, TOKENS_URL, json=body, status=status)
    tokens = InstallationTokens(4242, private_key_pem, API)
    with pytest.raises(GitHubError) as raised:
        asyncio.run(tokens.token(42))
    assert message in str(raised.value)
    assert raised.value.status == (None if status == 201 else status)
    assert "ghs_x" not in str(raised.value)


@responses.activate
def test_no_answer_is_a_transient_github_error(private_key_pem: str) -> None:
    responses.add(responses.POST, TOKENS_URL, body=requests.ConnectionError("refused"))
    tokens = InstallationTokens(4242, private_key_pem, API)
    with pytest.raises(GitHubError) as raised:
        asyncio.run(tokens.token(42))
    assert raised.value.status is None
    assert "no answer from GitHub (ConnectionError)" in str(raised.value)
