"""Reporters: turn a Report into text, JSON, SARIF, GitHub workflow commands or Markdown.

Each format lives in its own module with the same `render(...)` signature, and this package
imports a format's module only when that format is asked for: `asyncguard check` runs often
(pre-commit, CI), so start-up should not pay for formats it does not print.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from bot.findings import Report
    from bot.ruleinfo import RuleInfo

__all__ = ["FAIL_ON", "FORMATS", "Renderer", "render"]

FORMATS = ("text", "json", "sarif", "github", "markdown")
# The `fail-on` values of the config and the CLI; repeated here (not imported from the config
# module) so that rendering never pulls in pydantic.
FAIL_ON = ("error", "warning", "info", "never")


class Renderer(Protocol):
    """The one function every format module provides."""

    def __call__(
        self,
        report: Report,
        rules: Mapping[str, RuleInfo],
        *,
        color: bool,
        fail_on: str,
        tool_version: str,
    ) -> str: ...


def render(
    fmt: str,
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str,
) -> str:
    """Render `report` in format `fmt`; `rules` maps every known code to its RuleInfo.

    Raises ValueError for an unknown format or `fail_on` value (the CLI validates both first,
    so this only fires on a programming error).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if fail_on not in FAIL_ON:
        raise ValueError(f"unknown fail-on {fail_on!r}; expected one of: {', '.join(FAIL_ON)}")
    module = importlib.import_module(f"{__name__}.{fmt}")
    renderer = cast(Renderer, module.render)
    return renderer(report, rules, color=color, fail_on=fail_on, tool_version=tool_version)


if TYPE_CHECKING:
    # Static proof that every format module matches `Renderer`, without importing them at run
    # time (the `cast` above would otherwise hide a drifting signature from mypy).
    from bot.reporters import github, json, markdown, sarif, text

    _RENDERERS: tuple[Renderer, ...] = (
        text.render,
        json.render,
        sarif.render,
        github.render,
        markdown.render,
    )
