"""Reading one YAML config file (a ``config_paths`` entry or ``env.yaml``) into a DictConfig:
missing files, YAML syntax errors and non-mapping contents become one-line ``ConfigError``s that
name the file (and the line and column of a syntax error)."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gym_rollouts.errors import ConfigError


def load_yaml_file(path: str | Path, label: str = "config_paths", shown: str | None = None) -> DictConfig:
    """One config file. ``label`` starts every error message (``config_paths``, ``env.yaml``);
    ``shown`` is the path as the user wrote it (default: ``path``)."""
    p = Path(path).expanduser()
    name = shown if shown is not None else str(path)
    if not p.is_file():
        raise ConfigError(f"{label}: file not found: {name}")
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{label}: YAML syntax error in {name}{where}: {problem}") from None
    if not isinstance(data, (dict, type(None))):
        raise ConfigError(f"{label}: {name} must hold a mapping at top level, not a {type(data).__name__}")
    try:
        cfg = OmegaConf.create(text)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{label}: cannot read {name}: {one_line(exc)}") from None
    if cfg is None or isinstance(cfg, ListConfig):
        raise ConfigError(f"{label}: {name} must hold a mapping at top level")
    return cfg


def one_line(exc: BaseException) -> str:
    """An OmegaConf error on one line: its message, plus the key it concerns when it names one."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    key = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.strip().startswith("full_key:")), "")
    return f"{lines[0]} (at {key})" if key else lines[0]
