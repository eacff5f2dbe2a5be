"""Masking of secrets in printed configs: API keys, tokens, Authorization headers. Nothing else."""

from __future__ import annotations

from typing import Any

MASK = "****"
_SECRET_NAMES = frozenset({"api_key", "hf_token", "authorization", "proxy_authorization", "password", "secret",
                           "secret_key", "private_key", "access_key", "access_token", "auth_token", "api_token"})
# NeMo Gym's env.yaml holds keys and tokens of other services too (wandb_api_key, hf_token,
# mlflow_tracking_token, a judge's api key, ...): every ``*_token`` is masked except tokenizer
# special tokens (``eos_token``, ``add_bos_token``), which are text, not credentials.
_SECRET_SUFFIXES = ("_api_key", "_token_secret", "_password", "_secret", "_secret_key", "_private_key",
                    "_access_key", "_token")
_NOT_SECRET_SUFFIXES = tuple(f"{name}_token" for name in ("bos", "eos", "pad", "unk", "sep", "cls", "mask"))


def is_secret_key(key: str) -> bool:
    """By whole name or suffix, never by substring (``max_output_tokens`` is not a secret).
    Case and ``-``/``_`` do not matter, so HTTP headers such as ``X-Api-Key`` are caught too."""
    k = str(key).lower().replace("-", "_")
    if k.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return k in _SECRET_NAMES or k.endswith(_SECRET_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of a plain container with every secret value replaced by ``****``."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
