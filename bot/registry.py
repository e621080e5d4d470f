"""The installed rules, by code. Importing this imports libcst and every rule module."""

from __future__ import annotations

from functools import lru_cache

from bot.rule import Rule
from bot.ruleinfo import RuleInfo


@lru_cache(maxsize=1)
def all_rules() -> tuple[type[Rule], ...]:
    from rules import ALL_RULES

    return tuple(sorted(ALL_RULES, key=lambda rule: rule.CODE))


def rules_by_code() -> dict[str, type[Rule]]:
    return {rule.CODE: rule for rule in all_rules()}


def rule_infos() -> tuple[RuleInfo, ...]:
    return tuple(rule.info() for rule in all_rules())


def find_rule(code_or_name: str) -> type[Rule] | None:
    wanted = code_or_name.strip()
    for rule in all_rules():
        if wanted.upper() == rule.CODE or wanted.lower() == rule.NAME:
            return rule
    return None
