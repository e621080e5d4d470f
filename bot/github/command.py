"""`asyncguard review`: the GitHub Action's entry point, and the same review from a shell.

Where the pull request comes from:

- `--repo OWNER/NAME --pr N` (token from `GITHUB_TOKEN`), or
- the Action's environment: `GITHUB_EVENT_NAME`, `GITHUB_EVENT_PATH` (the event's JSON),
  `GITHUB_REPOSITORY`, `GITHUB_WORKSPACE`, `GITHUB_API_URL`, the token in `INPUT_GITHUB-TOKEN`
  (inputs keep their hyphens) or `GITHUB_TOKEN`. Events other than `pull_request` and
  `pull_request_target` end at once with a notice and exit code 0.

Inside a runner (`GITHUB_ACTIONS=true`) it also writes the step outputs (`GITHUB_OUTPUT`), a job
summary (`GITHUB_STEP_SUMMARY`) and a SARIF file for code scanning. When the token cannot write
(a fork's pull request), the findings become workflow annotations instead of a review; the exit
code still follows `fail-on`. `--dry-run` reads what it needs and prints, as a JSON array, every
write it would have sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__
from bot.findings import Finding, Severity

if TYPE_CHECKING:  # the heavy imports wait until a review runs (see bot/cli.py)
    from bot.github.review import ReviewOptions, ReviewOutcome

__all__ = ["ReviewUsageError", "add_review_arguments", "run_review"]

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
SARIF_NAME = "asyncguard.sarif"
SUMMARY_ROWS = 200
# The defaults action.yml declares. The runner always sets every input, so an input equal to its
# default is read as "not set" and the repository's config file decides.
ACTION_DEFAULTS = {
    "fail-on": "error",
    "filter-mode": "added",
    "max-comments": "25",
    "review-event": "COMMENT",
    "config-from": "base",
    "working-directory": ".",
}


class ReviewUsageError(Exception):
    """A problem with how `review` was invoked; one line, exit code 2."""


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("pull request (default: from the GitHub Actions event)")
    target.add_argument("--repo", metavar="OWNER/NAME", help="the repository of the pull request")
    target.add_argument("--pr", type=int, metavar="N", help="the pull request's number")
    target.add_argument(
        "--api-url", metavar="URL", help="the REST API root (default: $GITHUB_API_URL or GitHub)"
    )
    target.add_argument(
        "--checkout",
        metavar="DIR",
        help="a local clone to read the code from when it has the head commit "
        "(default: $GITHUB_WORKSPACE in Actions, else the current directory)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="do the reads, send no write; print the writes as JSON",
    )
    parser.add_argument("--config", metavar="FILE", help="config file, relative to the repo root")
    parser.add_argument("--config-from", choices=("base", "head"))
    parser.add_argument("--fail-on", choices=("error", "warning", "info", "never"))
    parser.add_argument("--filter-mode", choices=("added", "diff_context", "file", "nofilter"))
    parser.add_argument("--max-comments", type=int, metavar="N")
    parser.add_argument("--review-event", choices=("COMMENT", "REQUEST_CHANGES"))
    parser.add_argument(
        "--working-directory", metavar="DIR", help="review only files under DIR (repo-relative)"
    )
    parser.add_argument("--sarif", metavar="FILE", help="also write the findings as SARIF")


@dataclass(frozen=True)
class _Target:
    repository: str
    number: int
    token: str | None
    api_url: str
    checkout: Path | None
    in_action: bool


def run_review(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run `asyncguard review`; returns the exit code. Raises ReviewUsageError, ConfigError
    and GitHubError for the CLI to print as one line."""
    env = os.environ if environ is None else environ
    in_action = env.get("GITHUB_ACTIONS") == "true"
    try:
        target = _target(args, env)
    except _NotAPullRequest as reason:
        print(f"::notice title=asyncguard::{reason}" if in_action else f"asyncguard: {reason}")
        return EXIT_OK
    options = _options(args, env)
    from github import Auth

    from bot.config import ConfigError
    from bot.github.api import GitHubApi, GitHubError
    from bot.github.review import review_pull_request

    api = GitHubApi(
        Auth.Token(target.token) if target.token else None,
        target.api_url,
        dry_run=args.dry_run,
    )
    try:
        outcome = review_pull_request(
            api, target.repository, target.number, checkout=target.checkout, options=options
        )
    except (ConfigError, GitHubError) as error:
        if target.in_action:
            print(f"::error title=asyncguard::{_one_line(str(error))}")
        raise
    return _report(outcome, args, env, target)


# -- where the pull request comes from --------------------------------------------------------


class _NotAPullRequest(Exception):
    """Nothing to review (another event); the message is the notice."""


def _target(args: argparse.Namespace, env: Mapping[str, str]) -> _Target:
    from bot.github.api import DEFAULT_API_URL

    token = _input(env, "github-token") or env.get("GITHUB_TOKEN") or None
    api_url = args.api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL
    in_action = env.get("GITHUB_ACTIONS") == "true"
    if args.repo or args.pr is not None:
        if not args.repo or args.pr is None:
            raise ReviewUsageError("--repo and --pr go together")
        _check_repository(args.repo)
        if args.pr <= 0:
            raise ReviewUsageError(f"--pr must be a positive number, not {args.pr}")
        checkout = Path(args.checkout) if args.checkout else Path.cwd()
        return _Target(args.repo, args.pr, token, api_url, checkout, in_action)
    event_name = env.get("GITHUB_EVENT_NAME")
    event_path = env.get("GITHUB_EVENT_PATH")
    if not event_name or not event_path:
        raise ReviewUsageError(
            "no pull request to review: give --repo OWNER/NAME --pr N, or run in GitHub Actions "
            "on a pull_request event"
        )
    if event_name not in PULL_REQUEST_EVENTS:
        raise _NotAPullRequest(
            f"the {event_name!r} event has no pull request to review; asyncguard runs on "
            "pull_request and pull_request_target"
        )
    event = _read_event(Path(event_path))
    pull = event.get("pull_request")
    number = pull.get("number") if isinstance(pull, dict) else None
    if not isinstance(number, int):
        raise ReviewUsageError(f"{event_path}: the event has no pull_request.number")
    repository = env.get("GITHUB_REPOSITORY") or _event_repository(event)
    if not repository:
        raise ReviewUsageError("GITHUB_REPOSITORY is not set and the event names no repository")
    _check_repository(repository)
    workspace = args.checkout or env.get("GITHUB_WORKSPACE")
    checkout = Path(workspace) if workspace else Path.cwd()
    return _Target(repository, number, token, api_url, checkout, in_action)


def _read_event(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReviewUsageError(f"cannot read the event file {path}: {error.strerror}") from None
    except ValueError as error:
        raise ReviewUsageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ReviewUsageError(f"{path}: the event is not a JSON object")
    return data


def _event_repository(event: Mapping[str, object]) -> str | None:
    repository = event.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    return name if isinstance(name, str) else None


def _check_repository(value: str) -> None:
    from bot.github.api import GitHubError
    from bot.github.pull import split_repository

    try:
        split_repository(value)
    except GitHubError as error:
        raise ReviewUsageError(str(error)) from None


def _options(args: argparse.Namespace, env: Mapping[str, str]) -> ReviewOptions:
    from bot.github.review import ReviewOptions

    def pick(flag: object, name: str) -> str | None:
        if flag is not None:
            return str(flag)
        value = _input(env, name)
        return None if not value or value == ACTION_DEFAULTS.get(name) else value

    max_comments = pick(args.max_comments, "max-comments")
    try:
        max_value = int(max_comments) if max_comments is not None else None
    except ValueError:
        raise ReviewUsageError(f"max-comments must be a number, not {max_comments!r}") from None
    directory = args.working_directory or _input(env, "working-directory") or ""
    return ReviewOptions(
        config_path=args.config or _input(env, "config") or None,
        config_from=pick(args.config_from, "config-from"),
        fail_on=pick(args.fail_on, "fail-on"),
        filter_mode=pick(args.filter_mode, "filter-mode"),
        max_comments=max_value,
        review_event=pick(args.review_event, "review-event"),
        working_directory="" if directory.strip() in ("", ".", "./") else directory.strip(),
    )


def _input(env: Mapping[str, str], name: str) -> str:
    """An Action input: the runner sets `INPUT_<NAME>` upper-cased, hyphens kept."""
    return env.get(f"INPUT_{name.upper()}", "").strip()


# -- telling the result -----------------------------------------------------------------------


def _report(
    outcome: ReviewOutcome, args: argparse.Namespace, env: Mapping[str, str], target: _Target
) -> int:
    if outcome.skipped:
        print(f"asyncguard: nothing to review: {outcome.skipped}")
        return EXIT_OK
    sarif_path = _sarif_path(args, env, target)
    if sarif_path is not None:
        _write_sarif(outcome, sarif_path)
    if args.dry_run:
        print(json.dumps(outcome.writes, indent=2, ensure_ascii=False))
        print(_status_line(outcome), file=sys.stderr)
    else:
        print(_status_line(outcome))
        if outcome.read_only or outcome.post_error:
            _annotate(outcome)
    if target.in_action and not args.dry_run:
        _write_outputs(env, outcome, sarif_path)
        _write_summary(env, outcome)
    if outcome.post_error:
        return EXIT_ERROR
    return EXIT_FINDINGS if outcome.failed else EXIT_OK


def _status_line(outcome: ReviewOutcome) -> str:
    report = outcome.report
    where = f"{outcome.repository}#{outcome.number} at {outcome.head_sha[:12]}"
    found = _counts(report.findings)
    if outcome.read_only:
        action = "the token cannot write here (a fork?): findings shown as annotations"
    elif outcome.post_error:
        action = f"could not post the review: {_one_line(outcome.post_error)}"
    elif outcome.posted:
        action = f"review with {outcome.comments} inline comment(s)"
        action += f" {outcome.review_url}" if outcome.review_url else ""
    else:
        action = "nothing new to post"
    extras = []
    if outcome.already_reported:
        extras.append(f"{outcome.already_reported} already reported")
    if outcome.resolved:
        extras.append(f"{outcome.resolved} earlier comment(s) marked fixed")
    if outcome.refused:
        extras.append(f"{outcome.refused} comment(s) refused by GitHub, listed in the body")
    tail = f" ({'; '.join(extras)})" if extras else ""
    return f"asyncguard: {where}: {found}; {action}{tail}"


def _counts(findings: list[Finding]) -> str:
    from bot.review_plan import severity_counts

    if not findings:
        return "no findings"
    plural = "s" if len(findings) != 1 else ""
    return f"{len(findings)} finding{plural} ({severity_counts(findings)})"


def _annotate(outcome: ReviewOutcome) -> None:
    """The findings as workflow annotations, wrapped so no finding can inject a command."""
    from bot.reporters.github import format_finding

    if outcome.read_only:
        print(
            "::warning title=asyncguard::the token cannot write to this pull request (a fork's "
            "pull request gets a read-only token); the findings are annotations and in the job "
            "summary instead of a review"
        )
    for finding in outcome.report.findings:
        print(format_finding(finding))


def _sarif_path(args: argparse.Namespace, env: Mapping[str, str], target: _Target) -> Path | None:
    if args.sarif:
        return Path(args.sarif)
    if target.in_action and not args.dry_run:
        workspace = env.get("GITHUB_WORKSPACE")
        return Path(workspace) / SARIF_NAME if workspace else Path(SARIF_NAME)
    return None


def _write_sarif(outcome: ReviewOutcome, path: Path) -> None:
    from bot.registry import rule_infos
    from bot.reporters import render

    text = render(
        "sarif",
        outcome.report,
        {info.code: info for info in rule_infos()},
        tool_version=__version__,
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ReviewUsageError(f"cannot write {path}: {error.strerror}") from None


def _write_outputs(env: Mapping[str, str], outcome: ReviewOutcome, sarif: Path | None) -> None:
    output = env.get("GITHUB_OUTPUT")
    if not output:
        return
    findings = outcome.report.findings
    sarif_value = ""
    if sarif is not None:
        workspace = env.get("GITHUB_WORKSPACE")
        try:
            sarif_value = str(sarif.relative_to(workspace)) if workspace else str(sarif)
        except ValueError:
            sarif_value = str(sarif)
    values = {
        "findings": str(len(findings)),
        "errors": str(sum(1 for f in findings if f.severity is Severity.ERROR)),
        "warnings": str(sum(1 for f in findings if f.severity is Severity.WARNING)),
        "sarif-file": sarif_value,
    }
    _append(Path(output), "".join(f"{key}={value}\n" for key, value in values.items()))


def _write_summary(env: Mapping[str, str], outcome: ReviewOutcome) -> None:
    summary = env.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    _append(Path(summary), job_summary(outcome, server))


def job_summary(outcome: ReviewOutcome, server_url: str) -> str:
    """The Markdown job summary: what was found, what was posted, a table with links."""
    from bot.review_plan import table_cell

    findings = outcome.report.findings
    lines = [
        "## asyncguard",
        "",
        f"Reviewed **{outcome.repository}#{outcome.number}** at `{outcome.head_sha[:12]}`"
        + (f" (config from {outcome.config_source})" if outcome.config_source else "")
        + f": **{_counts(findings)}**.",
        "",
    ]
    if outcome.read_only:
        lines.append(
            "The token cannot write to this pull request (pull requests from forks get a "
            "read-only token), so the findings are shown as annotations and below."
        )
    elif outcome.post_error:
        lines.append(f"The review could not be posted: {table_cell(outcome.post_error)}")
    elif outcome.posted and outcome.review_url:
        lines.append(
            f"Posted [a review]({outcome.review_url}) with {outcome.comments} inline comment(s)."
        )
    elif outcome.posted:
        lines.append(f"Posted a review with {outcome.comments} inline comment(s).")
    else:
        lines.append("Nothing new to post on the pull request.")
    if outcome.already_reported or outcome.resolved:
        lines.append(
            f"{outcome.already_reported} already reported; "
            f"{outcome.resolved} earlier comment(s) marked fixed."
        )
    if findings:
        lines += ["", "| Severity | Rule | Location | Message |", "|---|---|---|---|"]
        for finding in findings[:SUMMARY_ROWS]:
            link = (
                f"{server_url}/{outcome.repository}/blob/{outcome.head_sha}/"
                f"{finding.path}#L{finding.span.start_line}"
            )
            location = f"[{table_cell(finding.path)}:{finding.span.start_line}]({link})"
            cells = [
                finding.severity.value,
                table_cell(f"{finding.code} {finding.name}"),
                location,
                table_cell(finding.message),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if len(findings) > SUMMARY_ROWS:
            lines.append(f"\n*… and {len(findings) - SUMMARY_ROWS} more.*")
    notes = outcome.report.notes
    if notes:
        lines += ["", "<details><summary>Files not reviewed</summary>", ""]
        lines += [
            f"- `{note.path or '(pull request)'}`: {table_cell(note.message)}" for note in notes
        ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise ReviewUsageError(f"cannot write {path}: {error.strerror}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())
