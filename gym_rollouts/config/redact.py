"""Masking of secrets in printed configs: API keys, tokens, Authorization headers. Nothing else."""

from __future__ import annotations

from typing import Any

MASK = "****"
_SECRET_NAMES = frozenset({"api_key", "hf_token", "authorization", "proxy_authorization", "password"})
_SECRET_SUFFIXES = ("_api_key", "_token_secret", "_password")


def is_secret_key(key: str) -> bool:
    """By whole name or suffix, never by substring (``max_output_tokens`` is not a secret).
    Case and ``-``/``_`` do not matter, so HTTP headers such as ``X-Api-Key`` are caught too."""
    k = str(key).lower().replace("-", "_")
    return k in _SECRET_NAMES or k.endswith(_SECRET_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of a plain container with every secret value replaced by ``****``."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
