"""Command line: argument parsing only; the work happens in `bot.pipeline`.

Imports are lazy: `asyncguard --version` must start in well under 0.1 s, and libcst alone costs
more than that to import.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bot import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "sarif", "github", "markdown")


class UsageError(Exception):
    """A one-line error for the user; exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asyncguard", description="Review async Python (FastAPI + SQLAlchemy asyncio) changes."
    )
    parser.add_argument("--version", action="version", version=f"asyncguard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = commands.add_parser("check", help="check files or a diff and print the findings")
    check.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or directories (default: the current directory)",
    )
    source = check.add_mutually_exclusive_group()
    source.add_argument("--diff", metavar="FILE", help="a unified diff to review ('-' for stdin)")
    source.add_argument(
        "--base", metavar="REF", help="review the working tree against the merge-base with REF"
    )
    check.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    check.add_argument(
        "--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout"
    )
    check.add_argument(
        "--config", metavar="FILE", help="use this config file instead of discovering one"
    )
    check.add_argument("--filter-mode", choices=("added", "diff_context", "file", "nofilter"))
    check.add_argument("--fail-on", choices=("error", "warning", "info", "never"))
    check.add_argument(
        "--select",
        metavar="CODES",
        help="comma-separated codes, prefixes or names (replaces the config's)",
    )
    check.add_argument("--extend-select", metavar="CODES", help="codes to add to the selection")
    check.add_argument("--ignore", metavar="CODES", help="codes to leave out")
    check.add_argument(
        "--no-index", action="store_true", help="do not scan unchanged files for repository facts"
    )
    check.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: automatic)"
    )
    check.add_argument("--fix", action="store_true", help="apply safe fixes to the files")
    check.add_argument(
        "--unsafe-fixes", action="store_true", help="also apply unsafe fixes (implies --fix)"
    )
    check.add_argument(
        "--diff-fixes",
        action="store_true",
        help="print the fixes as a unified diff instead of writing them",
    )
    check.add_argument(
        "--exit-zero", action="store_true", help="exit 0 even when findings fail the run"
    )

    review = commands.add_parser(
        "review",
        help="review a GitHub pull request and post one review (the Action's entry point)",
    )
    _add_lazily(review, "bot.github.command", "add_review_arguments")
    serve = commands.add_parser("serve", help="run the webhook server (GitHub App)")
    _add_lazily(serve, "bot.server.main", "add_serve_arguments")

    commands.add_parser("rules", help="list the rules")
    explain = commands.add_parser("explain", help="show a rule's documentation")
    explain.add_argument("rule", metavar="CODE|NAME")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "check":
            return _check(args)
        if args.command == "review":
            return _review(args)
        if args.command == "serve":
            from bot.server.main import run_serve

            return run_serve(args)
        if args.command == "rules":
            return _rules()
        if args.command == "explain":
            return _explain(args.rule)
        raise UsageError(
            "a command is required: check, review, serve, rules or explain (see asyncguard --help)"
        )
    except UsageError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted")
    except MemoryError:
        _fail("out of memory")
    except Exception as error:  # a bug of ours: one line for the user, never a traceback
        if os.environ.get("ASYNCGUARD_DEBUG"):
            raise
        _fail(
            f"internal error ({type(error).__name__}: {error}); set ASYNCGUARD_DEBUG=1 for details"
        )
    except BrokenPipeError:
        # The reader went away (`asyncguard check | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_USAGE


def _add_lazily(parser: argparse.ArgumentParser, module: str, function: str) -> None:
    # The argument modules import nothing heavy at module level, so that `asyncguard check`
    # and `--version` do not pay for PyGithub or FastAPI.
    import importlib

    getattr(importlib.import_module(module), function)(parser)


def _review(args: argparse.Namespace) -> int:
    from bot.config import ConfigError
    from bot.github.api import GitHubError
    from bot.github.command import ReviewUsageError, run_review

    try:
        return run_review(args)
    except (ReviewUsageError, ConfigError, GitHubError) as error:
        raise UsageError(str(error)) from None


def _fail(message: str) -> NoReturn:
    first_line = " ".join(message.split())
    print(f"asyncguard: error: {first_line}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _check(args: argparse.Namespace) -> int:
    from bot.changeset import ChangeSet, DiffError, parse_unified_diff
    from bot.config import ConfigError, load_config
    from bot.findings import sort_key
    from bot.git import GitError, changeset_from_base, repo_root
    from bot.pipeline import Workspace, changeset_for_paths, restrict_to_paths, run
    from bot.registry import rule_infos
    from bot.reporters import render

    cwd = Path.cwd()
    workspace = Workspace(cwd=cwd, root=repo_root(cwd) or cwd)
    infos = rule_infos()
    try:
        config = load_config(cwd, infos, Path(args.config) if args.config else None)
        config = config.with_overrides(
            select=args.select,
            extend_select=args.extend_select,
            ignore=args.ignore,
            fail_on=args.fail_on,
            filter_mode=args.filter_mode,
            rules=infos,
        )
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    for given in args.paths:
        if not (cwd / given).exists() and args.diff is None and args.base is None:
            raise UsageError(f"no such file or directory: {given}")

    changeset: ChangeSet
    try:
        if args.diff is not None:
            changeset = parse_unified_diff(_read_diff(args.diff))
            changeset = restrict_to_paths(changeset, args.paths, cwd)
        elif args.base is not None:
            changeset = restrict_to_paths(changeset_from_base(args.base, cwd), args.paths, cwd)
        else:
            changeset = changeset_for_paths(args.paths, workspace, config)
    except (DiffError, GitError) as error:
        raise UsageError(str(error)) from None

    report = run(changeset, config, workspace, index=not args.no_index, workers=args.workers)
    if args.fix or args.unsafe_fixes or args.diff_fixes:
        from bot.fixes import plan_fixes, write_changes

        outcome = plan_fixes(report.findings, cwd, unsafe=args.unsafe_fixes)
        if args.diff_fixes:
            _write(outcome.unified_diff(), args.output)
            return EXIT_FINDINGS if outcome.changes and not args.exit_zero else EXIT_OK
        write_changes(outcome, cwd)
        report.findings = sorted(outcome.remaining, key=sort_key)
        report.fixed = len(outcome.fixed)
    color = (
        args.format == "text"
        and args.output is None
        and sys.stdout.isatty()
        and "NO_COLOR" not in os.environ
    )
    output = render(
        args.format,
        report,
        {info.code: info for info in infos},
        color=color,
        fail_on=config.fail_on,
        tool_version=__version__,
    )
    _write(output, args.output)
    failed = any(config.fails(finding.severity) for finding in report.findings)
    return EXIT_FINDINGS if failed and not args.exit_zero else EXIT_OK


def _read_diff(where: str) -> bytes:
    if where == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(where).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read diff {where}: {error.strerror or error}") from None


def _write(text: str, where: str | None) -> None:
    if where is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(where).write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {where}: {error.strerror or error}") from None


def _rules() -> int:
    from bot.registry import rule_infos

    infos = rule_infos()
    rows = [("CODE", "NAME", "SEVERITY", "SECTION")] + [
        (i.code, i.name, i.severity.value, i.section) for i in infos
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return EXIT_OK


def _explain(wanted: str) -> int:
    from bot.registry import find_rule, rule_infos

    rule = find_rule(wanted)
    if rule is None:
        import difflib

        names = [i.code for i in rule_infos()] + [i.name for i in rule_infos()]
        close = difflib.get_close_matches(wanted, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown rule '{wanted}'{hint}")
    from bot.docs import rule_page

    text = rule_page(rule.info())
    sys.stdout.write(text)
    return EXIT_OK
