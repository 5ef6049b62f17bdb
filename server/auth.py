"""Optional API keys: `Authorization: Bearer K`, `X-API-Key: K`, or `?api_key=K` (browsers'
WebSockets cannot set headers). With no keys configured everything is open."""

from __future__ import annotations

import hmac
from typing import Mapping

from server.errors import ApiError


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or query.get("api_key") or None


def check_key(keys: list[str], headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The accepted key (None when auth is off); raises ApiError 401 otherwise."""
    if not keys:
        return None
    key = presented_key(headers, query)
    # compare against every key in constant time, so timing says nothing about near misses
    if key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        return key
    raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer, X-API-Key or ?api_key=)",
                   headers={"WWW-Authenticate": "Bearer"})
