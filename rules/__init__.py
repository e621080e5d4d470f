"""The asyncguard rule pack: one module per skill section."""

from __future__ import annotations

from bot.rule import Rule
from rules.background import UnreferencedTask
from rules.concurrency import SharedSessionConcurrency
from rules.lifecycle import GlobalSession

ALL_RULES: tuple[type[Rule], ...] = (
    GlobalSession,
    SharedSessionConcurrency,
    UnreferencedTask,
)
