"""Fixes: helpers rules use to build them, and applying them to files (`check --fix`).

Safety follows ruff: a safe fix keeps the program's meaning apart from removing the bug; an
unsafe one may change behaviour in ways a person should look at (`--unsafe-fixes`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from bot.engine import apply_edits, libcst_parses
from bot.findings import Edit, Finding, FixSafety
from bot.semantics import BindingKind, Semantics


@dataclass(frozen=True)
class ImportPlan:
    """How to spell `qualname` in this file, and the insertion that makes it available."""

    spelling: str
    insertion: tuple[cst.CSTNode, str, str] | None


def ensure_import(semantics: Semantics, module: cst.Module, qualname: str) -> ImportPlan:
    """Reuse an existing import of `qualname` (or of its module), else plan `import <module>`.

    `asyncio.sleep` with `import asyncio as aio` present is spelled `aio.sleep`; with
    `from asyncio import sleep` present, `sleep`; otherwise `asyncio.sleep` plus a new
    `import asyncio` after the last top-level import.
    """
    module_name, _, attribute = qualname.rpartition(".")
    for name, binding in semantics.module_scope.bindings.items():
        if binding.kind is not BindingKind.IMPORT:
            continue
        if binding.qualname == qualname:
            return ImportPlan(name, None)
        if module_name and binding.qualname == module_name:
            return ImportPlan(f"{name}.{attribute}", None)
    statement = f"import {module_name}" if module_name else f"import {attribute}"
    return ImportPlan(qualname, _import_insertion(module, statement))


def ensure_from_import(
    semantics: Semantics, module: cst.Module, module_name: str, name: str
) -> ImportPlan:
    """Spell `module_name.name` as a bare `name`, adding `from module_name import name` if needed."""
    qualname = f"{module_name}.{name}"
    for local, binding in semantics.module_scope.bindings.items():
        if binding.kind is BindingKind.IMPORT and binding.qualname == qualname:
            return ImportPlan(local, None)
    for local, binding in semantics.module_scope.bindings.items():
        if binding.kind is BindingKind.IMPORT and binding.qualname == module_name:
            return ImportPlan(f"{local}.{name}", None)
    return ImportPlan(name, _import_insertion(module, f"from {module_name} import {name}"))


def _import_insertion(module: cst.Module, statement: str) -> tuple[cst.CSTNode, str, str]:
    last_import: cst.CSTNode | None = None
    for node in module.body:
        if isinstance(node, cst.SimpleStatementLine) and all(
            isinstance(small, (cst.Import, cst.ImportFrom)) for small in node.body
        ):
            last_import = node
        elif last_import is not None:
            break
    if last_import is not None:
        return (last_import, "\n" + statement, "after")
    first = module.body[0] if module.body else None
    if first is not None and _is_docstring(first):
        return (first, "\n" + statement, "after")
    if first is not None:
        return (first, statement + "\n", "before")
    return (module, statement + "\n", "before")


def _is_docstring(node: cst.CSTNode) -> bool:
    return (
        isinstance(node, cst.SimpleStatementLine)
        and len(node.body) == 1
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


# ---------------------------------------------------------------------- applying fixes
@dataclass
class FixOutcome:
    fixed: list[Finding] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    # path -> (old text, new text) for every file the fixes change
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def unified_diff(self) -> str:
        parts: list[str] = []
        for path, (old, new) in sorted(self.changes.items()):
            parts.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"a/{path}",
                    f"b/{path}",
                )
            )
        return "".join(line if line.endswith("\n") else line + "\n" for line in parts)


def plan_fixes(findings: Iterable[Finding], cwd: Path, *, unsafe: bool) -> FixOutcome:
    """Choose the fixes to apply: one per finding, non-overlapping, each file re-parsing."""
    outcome = FixOutcome()
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        applicable = finding.fix is not None and (unsafe or finding.fix.safety is FixSafety.SAFE)
        if applicable:
            by_path.setdefault(finding.path, []).append(finding)
        else:
            outcome.remaining.append(finding)
    for path, candidates in by_path.items():
        try:
            original = (cwd / path).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            outcome.remaining.extend(candidates)
            continue
        chosen: list[Finding] = []
        edits: list[Edit] = []
        for finding in sorted(candidates, key=lambda f: f.span):
            assert finding.fix is not None
            # The same import added by two fixes is one edit, not a conflict.
            new_edits = [edit for edit in finding.fix.edits if edit not in edits]
            if _overlaps(new_edits, edits):
                outcome.remaining.append(finding)  # fixed on the next run, after this one
                continue
            trial = apply_edits(original, sorted([*edits, *new_edits], key=lambda e: e.span))
            if not libcst_parses(trial):
                outcome.remaining.append(finding)
                continue
            chosen.append(finding)
            edits.extend(new_edits)
        if chosen:
            fixed = apply_edits(original, sorted(edits, key=lambda e: e.span))
            outcome.changes[path] = (original, fixed)
            outcome.fixed.extend(chosen)
    return outcome


def write_changes(outcome: FixOutcome, cwd: Path) -> None:
    for path, (_, new) in outcome.changes.items():
        (cwd / path).write_bytes(new.encode("utf-8"))


def _overlaps(new: list[Edit], existing: list[Edit]) -> bool:
    for a in new:
        a0, a1 = _bounds(a)
        for b in existing:
            b0, b1 = _bounds(b)
            if a0 == a1 and b0 == b1:
                if a0 == b0:  # two insertions at one point: their order would be a guess
                    return True
            elif a0 < b1 and b0 < a1:
                return True
    return False


def _bounds(edit: Edit) -> tuple[tuple[int, int], tuple[int, int]]:
    return (edit.span.start_line, edit.span.start_col), (edit.span.end_line, edit.span.end_col)
