"""`X-Hub-Signature-256`: how GitHub signs a delivery, and the constant-time check.

GitHub sends `sha256=` followed by the hex HMAC-SHA256 of the raw request body, keyed with the
webhook secret. The body is checked as received, byte for byte, before anything parses it.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PREFIX", "sign", "verify"]

PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send for `body`."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """Whether `header` is the signature of `body`; the comparison takes the same time wherever
    the first difference is, so it tells an attacker nothing."""
    expected = sign(secret, body).encode("ascii")
    # Compare bytes: compare_digest refuses non-ASCII str, and a header is attacker-controlled.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "surrogateescape"))
