"""The secrets of this process's run, and the one function that masks them in text.

A secret is the value of a config key that ``config/redact.py`` ``is_secret_key`` calls secret
(``policy_api_key``, ``model.api_key``, ``*_api_key``, ``*_token``, ...), wherever it was given:
the command line (``config/secret_overrides.py`` registers those before Hydra starts), a
``config_paths`` file, ``./env.yaml`` or a NeMo Gym model YAML (registered when the config is
composed, ``register_config_secrets``). ``mask_secrets(text)`` replaces every registered value and
every ``Authorization: <value>`` / ``Bearer <token>`` pattern by ``****``; it is applied to what
leaves the process as text: failure rows, log records (``SecretMaskingFilter``), printed
messages, ``doctor``'s report.

The registry is process-wide on purpose (the one exception to "no module-level mutable state"):
logging is process-wide too, and a value echoed back by a server must be masked wherever the
error travels, without threading a redactor through every call. It only grows, and a
placeholder (``EMPTY``, empty) or a value shorter than ``MIN_SECRET_LENGTH`` is not registered:
masking ``abc`` everywhere would garble paths and messages while hiding nothing worth hiding.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Iterable, Mapping

from gym_rollouts.config.redact import MASK, is_secret_key

MIN_SECRET_LENGTH = 4
PLACEHOLDERS = frozenset({"", "EMPTY", "???"})
# A value after "Authorization" (any case, quoted or not, ':' or '='), with or without its scheme,
# and a token after "Bearer". Not masked: a placeholder in angle brackets ("Bearer <policy_api_key>"
# in our own help texts), a ${...} reference and what is masked already.
_VALUE = r"(?![<$]|\*{4})[^\s\"'\\,;}\]]+"
_AUTHORIZATION = re.compile(r"(?i)(\b(?:proxy-)?authorization\b(?:\\*[\"'])?\s*[:=]\s*(?:\\*[\"'])?)"
                            r"((?:bearer|basic|token)\s+)?(?!(?:bearer|basic|token)\s)" + _VALUE)
_BEARER = re.compile(r"(?i)(\bbearer\s+)" + _VALUE)


class _Registry:
    """The registered secret values, longest first (a key that contains another is masked whole)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            known = set(self._values)
            for value in values:
                known.add(value)
                escaped = json.dumps(value, ensure_ascii=False)[1:-1]  # as it reads inside a JSON string
                known.add(escaped)
            self._values = tuple(sorted(known, key=len, reverse=True))

    @property
    def values(self) -> tuple[str, ...]:
        return self._values


_REGISTRY = _Registry()


def is_placeholder(value: Any) -> bool:
    """A value that stands for "no key" (``null``, ``EMPTY``, empty, Hydra's ``???``)."""
    return value is None or (isinstance(value, str) and value.strip() in PLACEHOLDERS)


def register_secret(value: Any) -> None:
    """Mask ``value`` from now on in everything ``mask_secrets`` sees (placeholders and values
    shorter than ``MIN_SECRET_LENGTH`` are ignored, see module doc)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and not is_placeholder(value) and len(value) >= MIN_SECRET_LENGTH:
        _REGISTRY.add([value])


def secret_values(config: Any) -> list[Any]:
    """Every value of a secret key in a plain config (nested dicts and lists), references left out."""
    found: list[Any] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            if is_secret_key(str(key)) and not isinstance(value, (Mapping, list, tuple)):
                found.append(value)
            else:
                found += secret_values(value)
    elif isinstance(config, (list, tuple)):
        for item in config:
            found += secret_values(item)
    return found


def register_config_secrets(config: Any) -> None:
    """Register the secrets of a composed, resolved config (``cli/app.py`` ``composed``)."""
    for value in secret_values(config):
        register_secret(value)


def known_secrets() -> tuple[str, ...]:
    return _REGISTRY.values


def mask_secrets(text: str) -> str:
    """``text`` with every registered secret and every Authorization / Bearer value as ``****``."""
    if not text:
        return text
    for value in _REGISTRY.values:
        if value in text:
            text = text.replace(value, MASK)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTHORIZATION.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return text


def mask_in(value: Any) -> Any:
    """A copy of a plain container (a JSON document, a failure row) with every string masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: mask_in(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_in(v) for v in value]
    return value


class SecretMaskingFilter(logging.Filter):
    """A handler filter: the record's message, traceback and stack text masked before it is
    formatted (``cli/app.py`` puts it on every handler Hydra's logging configured)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True
