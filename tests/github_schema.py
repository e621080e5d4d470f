"""Check request bodies against GitHub's official REST OpenAPI description (when present).

The reference file lives outside the project (`../shared/reference/`); a fresh clone has none,
so `schema_for` returns None and callers skip with a reason.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

OPENAPI = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "github-rest-openapi-subset.json"
)
SKIP_REASON = f"GitHub's OpenAPI description is not at {OPENAPI}"


@cache
def _spec() -> dict[str, Any] | None:
    if not OPENAPI.is_file():
        return None
    spec: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return spec


def _template(path: str) -> str | None:
    """The OpenAPI path template that `path` (relative to the API root) is an instance of."""
    spec = _spec()
    if spec is None:
        return None
    for template in spec["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return str(template)
    return None


def schema_for(method: str, path: str) -> dict[str, Any] | None:
    """The request body schema of `method path`, {} when the operation takes no body; None
    when the reference is absent. An operation missing from the reference is an error."""
    spec = _spec()
    if spec is None:
        return None
    template = _template(path)
    assert template is not None, f"{method} {path} is not an endpoint of GitHub's API"
    operation = spec["paths"][template].get(method.lower())
    assert operation is not None, f"{method} is not an operation of {template}"
    body = operation.get("requestBody")
    if body is None:
        return {}
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def validate(method: str, path: str, body: Any) -> None:
    """Assert `body` is a valid request body for `method path` (no-op without the reference)."""
    import jsonschema

    schema = schema_for(method, path)
    if schema is None:
        return
    if not schema:
        assert body in (None, {}), f"{method} {path} takes no body, got {body!r}"
        return
    jsonschema.validate(body, schema)
