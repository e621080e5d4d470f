"""Settings: from the environment and `.env`, checked, and one line naming what is wrong."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bot.server.settings import MIB, Settings, SettingsError, load_settings

from .support import CLI_SERVE, SERVE, server_env


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, private_key_pem: str
) -> pytest.MonkeyPatch:
    """A clean environment with the three required settings, in an empty directory."""
    for name in list(os.environ):
        if name.startswith(("ASYNCGUARD_", "GITHUB_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCGUARD_APP_ID", "4242")
    monkeypatch.setenv("ASYNCGUARD_PRIVATE_KEY", private_key_pem)
    monkeypatch.setenv("ASYNCGUARD_WEBHOOK_SECRET", "s3cret")
    return monkeypatch


def test_the_defaults(env: pytest.MonkeyPatch, private_key_pem: str) -> None:
    settings = load_settings()
    assert settings.app_id == 4242
    assert settings.private_key.strip() == private_key_pem.strip()
    assert settings.webhook_secret == b"s3cret"
    assert settings.api_url == "https://api.github.com"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.repo_concurrency == 2
    assert settings.max_queued == 1000
    assert settings.max_body_bytes == 25 * MIB
    assert settings.review_drafts is False
    assert settings.log_level == "info"
    assert settings.workers >= 1
    assert settings.insecure_no_signature is False


def test_every_variable(env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        "ASYNCGUARD_HOST": "0.0.0.0",
        "ASYNCGUARD_PORT": "9000",
        "ASYNCGUARD_WORKERS": "3",
        "ASYNCGUARD_REPO_CONCURRENCY": "1",
        "ASYNCGUARD_MAX_QUEUED": "50",
        "ASYNCGUARD_LOG_LEVEL": "DEBUG",
        "ASYNCGUARD_REVIEW_DRAFTS": "true",
        "ASYNCGUARD_MAX_BODY_BYTES": "1048576",
        "ASYNCGUARD_JOB_ATTEMPTS": "2",
        "ASYNCGUARD_RETRY_DELAY": "0.5",
    }.items():
        env.setenv(name, value)
    settings = load_settings()
    assert settings.api_url == "https://ghe.example.com/api/v3"
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 3)
    assert (settings.repo_concurrency, settings.max_queued) == (1, 50)
    assert (settings.log_level, settings.review_drafts) == ("debug", True)
    assert (settings.max_body_bytes, settings.job_attempts, settings.retry_delay) == (MIB, 2, 0.5)
    # The command line wins over the variables.
    assert load_settings(host="127.0.0.2", port=9001).port == 9001


def test_the_key_from_a_file_or_with_escaped_newlines(
    env: pytest.MonkeyPatch, tmp_path: Path, private_key_pem: str
) -> None:
    key_file = tmp_path / "app.private-key.pem"
    key_file.write_text(private_key_pem)
    env.delenv("ASYNCGUARD_PRIVATE_KEY")
    env.setenv("ASYNCGUARD_PRIVATE_KEY_FILE", str(key_file))
    assert load_settings().private_key.strip() == private_key_pem.strip()
    env.delenv("ASYNCGUARD_PRIVATE_KEY_FILE")
    env.setenv("ASYNCGUARD_PRIVATE_KEY", private_key_pem.strip().replace("\n", "\\n"))
    assert load_settings().private_key.strip() == private_key_pem.strip()


def test_a_dot_env_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.delenv("ASYNCGUARD_APP_ID")
    (tmp_path / ".env").write_text("ASYNCGUARD_APP_ID=17\nASYNCGUARD_PORT=8123\n")
    env.setenv("ASYNCGUARD_PORT", "8124")  # the environment wins
    settings = load_settings()
    assert (settings.app_id, settings.port) == (17, 8124)
    other = tmp_path / "asyncguard.env"
    other.write_text("ASYNCGUARD_APP_ID=18\nGITHUB_API_URL=http://127.0.0.1:9/api\n")
    settings = load_settings(env_file=other)
    assert (settings.app_id, settings.api_url) == (18, "http://127.0.0.1:9/api")


def test_secrets_stay_out_of_repr(env: pytest.MonkeyPatch) -> None:
    text = repr(load_settings())
    assert "s3cret" not in text
    assert "PRIVATE KEY" not in text
    assert "app_id=4242" in text


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ASYNCGUARD_APP_ID": None}, "ASYNCGUARD_APP_ID is not set"),
        ({"ASYNCGUARD_APP_ID": "my-app"}, "ASYNCGUARD_APP_ID: Input should be a valid integer"),
        ({"ASYNCGUARD_APP_ID": "0"}, "ASYNCGUARD_APP_ID must be a positive integer, not 0"),
        ({"ASYNCGUARD_PRIVATE_KEY": None}, "ASYNCGUARD_PRIVATE_KEY (PEM text) or"),
        (
            {"ASYNCGUARD_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nnope\n"},
            "ASYNCGUARD_PRIVATE_KEY: cannot load the private key (not a PEM private key)",
        ),
        (
            {"ASYNCGUARD_PRIVATE_KEY": None, "ASYNCGUARD_PRIVATE_KEY_FILE": "/nonexistent/key.pem"},
            "ASYNCGUARD_PRIVATE_KEY_FILE: cannot read /nonexistent/key.pem",
        ),
        (
            {"ASYNCGUARD_PRIVATE_KEY_FILE": "/nonexistent/key.pem"},
            "set only one of ASYNCGUARD_PRIVATE_KEY and ASYNCGUARD_PRIVATE_KEY_FILE",
        ),
        ({"ASYNCGUARD_WEBHOOK_SECRET": None}, "ASYNCGUARD_WEBHOOK_SECRET is not set"),
        ({"ASYNCGUARD_WEBHOOK_SECRET": ""}, "ASYNCGUARD_WEBHOOK_SECRET is not set"),
        ({"GITHUB_API_URL": "ghe.example.com"}, "GITHUB_API_URL must be an http(s) URL"),
        ({"ASYNCGUARD_PORT": "http"}, "ASYNCGUARD_PORT: Input should be a valid integer"),
        ({"ASYNCGUARD_PORT": "70000"}, "ASYNCGUARD_PORT must be between 1 and 65535"),
        ({"ASYNCGUARD_WORKERS": "0"}, "ASYNCGUARD_WORKERS must be at least 1, not 0"),
        ({"ASYNCGUARD_REPO_CONCURRENCY": "-1"}, "ASYNCGUARD_REPO_CONCURRENCY must be at least 1"),
        ({"ASYNCGUARD_MAX_QUEUED": "0"}, "ASYNCGUARD_MAX_QUEUED must be at least 1"),
        ({"ASYNCGUARD_MAX_BODY_BYTES": "10"}, "ASYNCGUARD_MAX_BODY_BYTES must be at least 1024"),
        (
            {"ASYNCGUARD_REVIEW_DRAFTS": "maybe"},
            "ASYNCGUARD_REVIEW_DRAFTS: Input should be a valid boolean",
        ),
        ({"ASYNCGUARD_LOG_LEVEL": "loud"}, "ASYNCGUARD_LOG_LEVEL must be one of debug, info"),
        ({"ASYNCGUARD_RETRY_DELAY": "-1"}, "ASYNCGUARD_RETRY_DELAY must not be negative"),
    ],
)
def test_a_missing_or_malformed_setting_is_named(
    env: pytest.MonkeyPatch, variables: dict[str, str | None], message: str
) -> None:
    for name, value in variables.items():
        if value is None:
            env.delenv(name)
        else:
            env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_key_that_is_not_rsa_is_refused(env: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    env.setenv("ASYNCGUARD_PRIVATE_KEY", pem.decode())
    with pytest.raises(
        SettingsError, match="ASYNCGUARD_PRIVATE_KEY: the private key is not an RSA"
    ):
        load_settings()


def test_the_secret_is_optional_only_when_insecure(env: pytest.MonkeyPatch) -> None:
    env.delenv("ASYNCGUARD_WEBHOOK_SECRET")
    settings = load_settings(insecure_no_signature=True)
    assert settings.webhook_secret is None
    assert settings.insecure_no_signature


def test_a_missing_env_file_is_named(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"--env-file: no such file: .*nothing\.env"):
        load_settings(env_file=tmp_path / "nothing.env")


def test_a_bad_port_on_the_command_line_is_named(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="--port must be between 1 and 65535, not 0"):
        load_settings(port=0)


@pytest.mark.parametrize(
    ("settings", "args", "line"),
    [
        ({}, [], "asyncguard: error: ASYNCGUARD_APP_ID is not set (the GitHub App's numeric id)"),
        (
            {"ASYNCGUARD_APP_ID": "1", "ASYNCGUARD_PRIVATE_KEY": "KEY"},
            [],
            "asyncguard: error: ASYNCGUARD_WEBHOOK_SECRET is not set",
        ),
        (
            {"ASYNCGUARD_APP_ID": "1", "ASYNCGUARD_PRIVATE_KEY": "KEY"},
            ["--insecure-no-signature", "--port", "0"],
            "asyncguard: error: --port must be between 1 and 65535, not 0",
        ),
    ],
)
@pytest.mark.parametrize("command", [SERVE, CLI_SERVE], ids=["module", "cli"])
def test_the_command_exits_2_with_one_line(
    tmp_path: Path,
    private_key_pem: str,
    settings: dict[str, str],
    args: list[str],
    line: str,
    command: tuple[str, ...],
) -> None:
    settings = {k: private_key_pem if v == "KEY" else v for k, v in settings.items()}
    done = subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env=server_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(line), done.stderr


def test_settings_can_be_built_directly(private_key_pem: str) -> None:
    settings = Settings(app_id=1, private_key=private_key_pem, webhook_secret=b"s")
    assert settings.max_body_bytes == 25 * MIB
    assert settings.insecure_no_signature is False
