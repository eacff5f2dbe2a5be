"""From Hydra's composed DictConfig to the final plain config: ``config_paths`` merging.

Precedence, lowest to highest: ``conf/`` defaults and group choices, then each file in
``config_paths`` in order (later wins), then the command-line value overrides (the command line
always wins, so ``collect +config_paths=[a.yaml] policy_base_url=...`` does what it says).
``compose_plain`` runs the same steps in process with Hydra's compose API (tests, tools).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gym_rollouts.config.nemo_compat import translate_nemo_gym
from gym_rollouts.config.overrides import (check_group_choices, config_group_names, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.errors import ConfigError


def conf_dir() -> Path:
    """The ``conf/`` directory: inside the installed package, or the repository's top level."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_conf", here.parent / "conf"):
        if (candidate / "collect.yaml").is_file():
            return candidate
    raise ConfigError(f"cannot find the conf/ directory next to {here}")  # pragma: no cover


def load_yaml_file(path: str) -> DictConfig:
    """One config file; missing files and syntax errors become one-line ConfigErrors."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config_paths: file not found: {path}")
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config_paths: YAML syntax error in {path}{where}: {problem}") from None
    if not isinstance(data, (dict, type(None))):
        raise ConfigError(f"config_paths: {path} must hold a mapping at top level, not a {type(data).__name__}")
    try:
        cfg = OmegaConf.create(text)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config_paths: cannot read {path}: {one_line(exc)}") from None
    if cfg is None or isinstance(cfg, ListConfig):
        raise ConfigError(f"config_paths: {path} must hold a mapping at top level")
    return cfg


def one_line(exc: BaseException) -> str:
    """An OmegaConf error on one line: its message, plus the key it concerns when it names one."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    key = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.strip().startswith("full_key:")), "")
    return f"{lines[0]} (at {key})" if key else lines[0]


def merge_config_paths(cfg: DictConfig, cli_overrides: Sequence[str] = ()) -> DictConfig:
    """Merge the files named in ``cfg.config_paths`` and re-apply the command line on top."""
    paths = cfg.get("config_paths") or []
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        return cfg
    merged = copy.deepcopy(cfg)
    OmegaConf.set_struct(merged, False)  # files may add keys: unknown ones get the schema's hint
    for path in paths:
        file_cfg = translate_nemo_gym(load_yaml_file(str(path)), str(path))
        try:
            merged = OmegaConf.merge(merged, file_cfg)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"config_paths: cannot merge {path}: {one_line(exc)}") from None
    _reapply_cli(merged, cli_overrides)
    return merged


def _reapply_cli(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Re-apply value overrides (our normaliser spells them all ``++key=value``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = [o for o in overrides if o.startswith("++") and not o.startswith("++config_paths=")]
    for ov in OverridesParser.create().parse_overrides(values):
        if ov.is_sweep_override():
            continue  # each sweep job sees a plain override already
        OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=False, force_add=True)


def compose_plain(overrides: Sequence[str] = (), *, config_name: str = "collect") -> dict[str, Any]:
    """Compose ``conf/`` in process with Hydra's compose API, exactly as the console scripts do
    (override normalisation, ``config_paths`` merged, command line on top); for tests and tools."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    cdir = conf_dir()
    check_group_choices(overrides, cdir)
    normalized = normalize_overrides(overrides, config_group_names(cdir), primary_default_groups(cdir, config_name))
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=normalized)
    except HydraException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return to_plain(merge_config_paths(cfg, normalized))


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Resolve interpolations into a plain dict (without Hydra's own node)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config: {one_line(exc)}") from None
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return container
