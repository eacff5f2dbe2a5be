"""Secrets typed on the command line never reach Hydra: each becomes a reference to a variable.

Hydra writes every override into ``.hydra/overrides.yaml``, ``hydra.yaml``, ``config.yaml``,
``multirun.yaml`` and its ``--cfg`` / ``hydra.verbose`` output. So before Hydra sees the command
line, ``hide_secret_overrides`` rewrites each override of a secret key (``config/redact.py``
``is_secret_key``: ``policy_api_key``, ``model.api_key``, ``*_api_key``, ``*_token``, ...) that
carries a literal value into ``key=${oc.env:GYM_ROLLOUTS_SECRET_<KEY>}``, and ``export_secrets``
puts the value into that variable of this process's environment (launcher jobs started from this
process inherit it; a job on another machine, e.g. a Ray worker, needs it set there).

Left as typed: a reference (``policy_api_key=${oc.env:MY_KEY}``, any value holding ``${``),
``null`` and placeholders (``EMPTY``). Refused, with the fix: a sweep over literal secrets
(``-m policy_api_key=a,b``) and a secret written inside an inline dict or list
(``model.extra_body.headers={Authorization: ...}``). A literal is taken as Hydra would parse it
(quotes removed); one Hydra cannot parse (``key=abc=``) is taken as typed.

The rewrite is pure and deterministic (the variable is named after the key), so ``collect``'s
resume command can print the reference and say which variable to export (``given_literally``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, MutableMapping, Sequence

from gym_rollouts.config.redact import is_secret_key
from gym_rollouts.config.secrets import is_placeholder, register_secret
from gym_rollouts.errors import ConfigError

SECRET_ENV_PREFIX = "GYM_ROLLOUTS_SECRET_"
_ENV_REFERENCE = re.compile(r"\$\{oc\.env:([^,}\s]+)(?:,[^}]*)?\}")
_UNPARSED = object()


@dataclass(frozen=True)
class HiddenSecret:
    """One literal secret moved off the command line into ``variable``."""

    key: str  # the config key as typed, without the leading + (policy_api_key, model.api_key)
    variable: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretFreeArgv:
    args: list[str]  # the command line with every literal secret replaced by its reference
    hidden: tuple[HiddenSecret, ...] = ()
    referenced: tuple[str, ...] = ()  # variables the user's own references of secret keys name


def secret_variable(key: str) -> str:
    """``policy_api_key`` -> ``GYM_ROLLOUTS_SECRET_POLICY_API_KEY`` (``model.api_key`` -> ``..._MODEL_API_KEY``)."""
    return SECRET_ENV_PREFIX + re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_").upper()


def reference(variable: str) -> str:
    return "${oc.env:" + variable + "}"


def _value_override(arg: str) -> tuple[str, str, str] | None:
    """(prefix, key, value) of a ``key=value`` override; None for flags, deletions, group options."""
    if arg.startswith(("-", "~")) or "=" not in arg:
        return None
    typed_key, _, value = arg.partition("=")
    key = typed_key.lstrip("+")
    if not key or "/" in key or "@" in key:
        return None
    return typed_key[: len(typed_key) - len(key)], key, value


def _parsed(key: str, value: str) -> tuple[Any, bool]:
    """(value as Hydra parses it, is a sweep); ``_UNPARSED`` when Hydra cannot parse it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"++{key}={value}")
    except HydraException:
        return _UNPARSED, False
    return override.value(), override.is_sweep_override()


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _literal_secret_path(value: Any, path: str) -> str | None:
    """The dotted path of the first literal secret inside an inline dict / list value, if any."""
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}"
            if is_secret_key(str(key)) and not isinstance(item, (dict, list)):
                if not is_placeholder(item) and not _is_reference(item):
                    return inner
            elif (found := _literal_secret_path(item, inner)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _literal_secret_path(item, f"{path}[{index}]")) is not None:
                return found
    return None


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _refuse_sweep(key: str) -> ConfigError:
    return ConfigError(
        f"{key} is swept over literal values on the command line, which would write the keys into the "
        f"sweep's files: put each key in an environment variable and sweep over references instead, e.g. "
        f"export KEY_A=<key a> KEY_B=<key b>; collect -m '{key}=${{oc.env:KEY_A}},${{oc.env:KEY_B}}'")


def _refuse_inline(key: str, secret: str) -> ConfigError:
    return ConfigError(
        f"{key}= holds the secret {secret} written inline, which would be written into Hydra's files: "
        f"give it as an override of its own ({secret}=<value>; collect keeps such a value out of every file), "
        f"in a config_paths file or env.yaml, or as a reference: '{secret}=${{oc.env:VAR}}'")


def _hide_one(arg: str) -> tuple[str, HiddenSecret | None, list[str]]:
    """(the argument to pass on, the literal moved off it, variables it references)."""
    split = _value_override(arg)
    if split is None:
        return arg, None, []
    prefix, key, typed = split
    secret_key = is_secret_key(key.rsplit(".", 1)[-1])
    if not secret_key and not any(c in typed for c in "{["):
        return arg, None, []
    value, sweep = _parsed(key, typed)
    if not secret_key:
        if isinstance(value, (dict, list)) and (inline := _literal_secret_path(value, key)) is not None:
            raise _refuse_inline(key, inline)
        return arg, None, []
    if sweep:
        elements = getattr(value, "list", None)
        if elements is None or not all(_is_reference(e) for e in elements):
            raise _refuse_sweep(key)
        return arg, None, [m for e in elements for m in _ENV_REFERENCE.findall(e)]
    if value is _UNPARSED:
        value = typed
    if isinstance(value, (dict, list)):
        if (inline := _literal_secret_path(value, key)) is not None:
            raise _refuse_inline(key, inline)
        if any(not is_placeholder(v) and not _is_reference(v) for v in _leaves(value)):
            raise _refuse_inline(key, key)
        return arg, None, []
    if is_placeholder(value):
        return arg, None, []
    if _is_reference(value):
        return arg, None, _ENV_REFERENCE.findall(value)
    literal = value if isinstance(value, str) else typed
    variable = secret_variable(key)
    return f"{prefix}{key}={reference(variable)}", HiddenSecret(key, variable, literal), []


def hide_secret_overrides(argv: Sequence[str]) -> SecretFreeArgv:
    """The command line with every literal secret replaced by its reference (module doc); pure.
    Raises ``ConfigError`` (without the value) for what cannot be hidden."""
    args: list[str] = []
    hidden: list[HiddenSecret] = []
    referenced: list[str] = []
    for arg in argv:
        out, secret, names = _hide_one(arg)
        args.append(out)
        if secret is not None:
            hidden.append(secret)
        referenced += names
    return SecretFreeArgv(args, tuple(hidden), tuple(dict.fromkeys(referenced)))


def export_secrets(result: SecretFreeArgv, environ: MutableMapping[str, str] | None = None) -> None:
    """Put each hidden literal into its variable (later overrides of a key win, as in Hydra) and
    register every secret of the command line (also those the user's references name) for masking."""
    env = os.environ if environ is None else environ
    for secret in result.hidden:
        env[secret.variable] = secret.value
        register_secret(secret.value)
    for name in result.referenced:
        register_secret(env.get(name))


def given_literally(args: Sequence[str]) -> list[tuple[str, str]]:
    """(key, variable) of each argument that references a variable ``hide_secret_overrides``
    made: the key was typed as a literal, and the variable exists only in that run's process."""
    found = []
    for arg in args:
        split = _value_override(arg)
        if split is None:
            continue
        _prefix, key, value = split
        match = _ENV_REFERENCE.fullmatch(value)
        if match and match.group(1) == secret_variable(key) and value == reference(match.group(1)):
            found.append((key, match.group(1)))
    return list(dict.fromkeys(found))
