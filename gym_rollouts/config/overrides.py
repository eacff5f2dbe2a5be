"""Command-line override spelling: make NeMo Gym's ``+key=value`` and plain ``key=value`` both work.

hydra-core 1.3 refuses ``+key=value`` when the primary config already declares ``key`` and refuses
``key=value`` when it does not. NeMo Gym users type ``+num_samples_in_parallel=100`` for keys our
YAML declares, so we rewrite every value override (not config-group choices, not ``hydra.*``) to
Hydra's ``++key=value`` ("set, adding if absent"). Unknown keys then reach our schema validation,
which names them with a did-you-mean hint instead of Hydra's generic error. Config-group choices
work with or without ``+`` too; one naming no file under ``conf/<group>/`` gets a one-line hint.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from gym_rollouts.errors import ConfigError

_PLAIN_CHOICE = re.compile(r"[\w.-]+")


def config_group_names(conf_dir: Path) -> frozenset[str]:
    """Top-level config groups: the sub-directories of ``conf/``."""
    return frozenset(p.name for p in conf_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def primary_default_groups(conf_dir: Path, config_name: str = "collect") -> frozenset[str]:
    """Groups the primary config already chooses in its defaults list (``model``, ``servers``, ...)."""
    data = yaml.safe_load((conf_dir / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    return frozenset(str(next(iter(d))) for d in data.get("defaults") or [] if isinstance(d, dict) and len(d) == 1)


def normalize_override(arg: str, groups: frozenset[str], chosen: frozenset[str] | None = None) -> str:
    """Rewrite one command-line argument; anything that is not a value override passes through.

    With ``chosen`` (see ``primary_default_groups``) a group choice is spelled the way Hydra
    wants it whichever way it was typed: ``+model=x`` -> ``model=x``, ``experiment=x`` -> ``+experiment=x``.
    """
    if arg.startswith("-") or "=" not in arg or arg.startswith(("~", "++")):
        return arg
    key, _, value = arg.partition("=")
    bare = key[1:] if key.startswith("+") else key
    if not bare or "@" in bare or "/" in bare:
        return arg  # group option with a package or a nested group (hydra/launcher=...)
    root = bare.split(".", 1)[0]
    if root == "hydra":
        return arg
    if root in groups and "." not in bare:
        if chosen is None:
            return arg  # a config-group choice: model=vllm_for_training, +experiment=name
        return f"{bare}={value}" if bare in chosen else f"+{bare}={value}"
    return f"++{bare}={value}"


def normalize_overrides(args: Iterable[str], groups: frozenset[str],
                        chosen: frozenset[str] | None = None) -> list[str]:
    return [normalize_override(a, groups, chosen) for a in args]


def check_group_choices(args: Iterable[str], conf_dir: Path,
                        extra_options: Mapping[str, Iterable[str]] | None = None) -> None:
    """Refuse ``group=option`` for an option that has no ``conf/<group>/<option>.yaml`` (nor is one
    of ``extra_options[group]``: options stored in Hydra's ConfigStore, e.g. plugin resources),
    naming the closest option (Hydra's own message is a multi-line dump with exit code 1). Sweeps
    (``model=a,b``), globs and Hydra's own groups are left to Hydra."""
    groups = config_group_names(conf_dir)
    for arg in args:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+")
        if (not sep or group not in groups or group == "hydra" or value == "null"
                or not _PLAIN_CHOICE.fullmatch(value)):
            continue
        options = sorted({p.stem for p in (conf_dir / group).glob("*.yaml")}
                         | set((extra_options or {}).get(group, ())))
        if value not in options:
            close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
            hint = f" Did you mean '{group}={close[0]}'?" if close else ""
            raise ConfigError(f"Unknown option '{value}' for config group '{group}'.{hint} "
                              f"Available: {', '.join(options) or '(none)'}")
