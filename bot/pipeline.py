"""The pipeline shared by every front end: ChangeSet + Config -> Report.

diff source -> ChangeSet -> (this module: jobs, repository facts, engine, severities,
per-file ignores, filter) -> Report -> reporter. The CLI and the GitHub front ends differ only in
where the ChangeSet and the file contents come from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.changeset import ChangeSet, FileChange, FileStatus
from bot.config import Config
from bot.engine import FileJob, analyse_jobs
from bot.facts import RepoFacts
from bot.filtering import filter_findings
from bot.findings import Finding, Note, NoteKind, Report, Severity, sort_key
from bot.registry import all_rules
from bot.repo_index import SKIPPED_DIRS, build_index, module_name_for
from bot.rule import Rule, RuleOptions


@dataclass(frozen=True)
class Workspace:
    """Where files live: `cwd` is what changeset paths are relative to, `root` the checkout.

    `index_root` is the checkout the repository index reads when it is not `root` (a review
    whose head files were copied into a scratch directory); None means `root`.
    """

    cwd: Path
    root: Path
    index_root: Path | None = None


def changeset_for_paths(paths: Sequence[str], workspace: Workspace, config: Config) -> ChangeSet:
    """No diff: every Python file under the given paths, each counted as wholly new."""
    changes: list[FileChange] = []
    seen: set[str] = set()
    for given in paths or ["."]:
        target = workspace.cwd / given
        candidates = sorted(_python_files(target, config)) if target.is_dir() else [target]
        for candidate in candidates:
            relative = os.path.relpath(candidate, workspace.cwd).replace(os.sep, "/")
            if relative not in seen:
                seen.add(relative)
                changes.append(FileChange(relative, FileStatus.ADDED))
    return ChangeSet(tuple(changes), whole_files=True)


def _python_files(directory: Path, config: Config) -> list[Path]:
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(directory):
        dirnames[:] = [
            d
            for d in dirnames
            if d not in SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not config.is_excluded(str(Path(current, d).resolve()))
        ]
        found.extend(Path(current, f) for f in filenames if f.endswith(".py"))
    return found


def restrict_to_paths(changeset: ChangeSet, paths: Sequence[str], cwd: Path) -> ChangeSet:
    """With both a diff and paths, keep the diff's files under those paths."""
    if not paths:
        return changeset
    # Diff paths are relative to cwd; the given paths may be absolute or contain `..`.
    prefixes = [os.path.relpath(os.path.abspath(cwd / p), cwd).replace(os.sep, "/") for p in paths]

    def wanted(path: str) -> bool:
        return any(p in ("", ".") or path == p or path.startswith(p + "/") for p in prefixes)

    return ChangeSet(tuple(c for c in changeset if wanted(c.path)), changeset.whole_files)


def selected_rules(config: Config) -> list[type[Rule]]:
    rules = all_rules()
    enabled = {info.code for info in config.enabled_rules([r.info() for r in rules])}
    return [rule for rule in rules if rule.CODE in enabled]


def repository_facts(
    config: Config, workspace: Workspace, rules: Sequence[type[Rule]], index: bool
) -> RepoFacts:
    """What the rules need to know from other files: the index of the checkout plus config."""
    facts = RepoFacts.build(set(config.session_factories), set())
    if index and any("repo-index" in rule.NEEDS for rule in rules):
        facts = facts.merged(build_index(workspace.index_root or workspace.root))
    return facts


def run(
    changeset: ChangeSet,
    config: Config,
    workspace: Workspace,
    *,
    index: bool = True,
    workers: int | None = None,
) -> Report:
    rules = selected_rules(config)
    report = Report()
    jobs: list[FileJob] = []
    for change in changeset:
        if change.status is FileStatus.DELETED or not change.path.endswith(".py"):
            continue
        absolute = workspace.cwd / change.path
        if config.is_excluded(str(absolute)):
            continue
        if change.status is FileStatus.BINARY:
            report.notes.append(Note(NoteKind.BINARY, change.path, "skipped: binary file"))
            continue
        jobs.append(FileJob(change.path, str(absolute), _module_name(absolute, workspace.root)))
    if not rules:
        report.files_checked = len(jobs)
        return report
    facts = repository_facts(config, workspace, rules, index)
    options = RuleOptions(
        side_effect_patterns=tuple(config.side_effect_patterns),
        blocking_calls=tuple(config.blocking_calls),
        expire_on_commit=config.expire_on_commit,
    )
    findings: list[Finding] = []
    for job, result in zip(
        jobs, analyse_jobs(jobs, rules, facts, options, workers=workers), strict=True
    ):
        report.notes.extend(result.notes)
        if result.prefiltered:
            report.files_skipped_by_prefilter += 1
        if result.parsed or result.prefiltered:
            report.files_checked += 1
        findings.extend(_configured(result.findings, config, job))
    report.findings = sorted(filter_findings(findings, changeset, config.filter_mode), key=sort_key)
    return report


def _configured(findings: Sequence[Finding], config: Config, job: FileJob) -> list[Finding]:
    """Apply per-file ignores and the severities set in config (which beat a rule's own choice)."""
    ignored = config.ignored_codes_for(job.disk_path)
    kept = []
    for finding in findings:
        if finding.code in ignored:
            continue
        level = config.severity.get(finding.code) or config.severity.get(finding.name)
        if level == "off":
            continue
        kept.append(finding if level is None else replace(finding, severity=Severity(level)))
    return kept


def _module_name(path: Path, root: Path) -> str:
    try:
        relative = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        relative = path.name
    return module_name_for(relative)
