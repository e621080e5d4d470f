"""The asyncguard rule pack: one module per skill section.

Every `Rule` subclass with a `CODE` defined in a module of this package is a rule; adding a rule
is adding a class, nothing to register.
"""

from __future__ import annotations

import importlib
import pkgutil

from bot.rule import Rule


def _discover() -> tuple[type[Rule], ...]:
    found: dict[str, type[Rule]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Rule)
                and value.__module__ == module.__name__
                and "CODE" in vars(value)
            ):
                found[value.CODE] = value
    return tuple(found[code] for code in sorted(found))


ALL_RULES: tuple[type[Rule], ...] = _discover()
