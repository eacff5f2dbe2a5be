"""Command-line override spelling: make NeMo Gym's ``+key=value`` and plain ``key=value`` both work.

hydra-core 1.3 refuses ``+key=value`` when the primary config already declares ``key`` and refuses
``key=value`` when it does not. NeMo Gym users type ``+num_samples_in_parallel=100`` for keys our
YAML declares, so we rewrite every value override (not config-group choices, not ``hydra.*``) to
Hydra's ``++key=value`` ("set, adding if absent"). Unknown keys then reach our schema validation,
which names them with a did-you-mean hint instead of Hydra's generic error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def config_group_names(conf_dir: Path) -> frozenset[str]:
    """Top-level config groups: the sub-directories of ``conf/``."""
    return frozenset(p.name for p in conf_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def normalize_override(arg: str, groups: frozenset[str]) -> str:
    """Rewrite one command-line argument; anything that is not a value override passes through."""
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
        return arg  # a config-group choice: model=vllm_for_training, +experiment=name
    return f"++{bare}={value}"


def normalize_overrides(args: Iterable[str], groups: frozenset[str]) -> list[str]:
    return [normalize_override(a, groups) for a in args]
