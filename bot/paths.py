"""What kind of file a path is, by its name: tests, Alembic's environment script.

Shared by the repository index (facts from test files do not describe the app) and the rules
that exempt tests and migrations.
"""

from __future__ import annotations

import re

TEST_PATH = re.compile(r"(?:^|/)(?:tests?|testing)/|(?:^|/)(?:test_[^/]*|[^/]*_test|conftest)\.py$")
# Alembic's environment script: `env.py` under a migrations or alembic directory.
ALEMBIC_ENV = re.compile(r"(?:^|/)(?:[^/]*alembic[^/]*|migrations?)/(?:[^/]+/)*env\.py$")


def is_test_path(path: str) -> bool:
    return bool(TEST_PATH.search(path.replace("\\", "/")))


def is_alembic_env(path: str) -> bool:
    return bool(ALEMBIC_ENV.search(path.replace("\\", "/").lower()))
