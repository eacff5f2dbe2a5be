"""From Hydra's composed DictConfig to the final plain config: ``env.yaml`` and ``config_paths``.

Precedence, lowest to highest, as NeMo Gym orders it (see config/env_yaml.py): ``conf/`` defaults
and group choices, then each file in ``config_paths`` in order (later wins; a file's own
``config_paths`` are loaded after the list, as NeMo Gym does), then the working directory's
``env.yaml``, then the command-line value overrides (the command line always wins, so
``collect +config_paths=[a.yaml] policy_base_url=...`` does what it says). ``config_paths`` is
the command line's when given there, else ``env.yaml``'s. NeMo Gym server blocks are translated
by config/nemo_compat.py; NeMo Gym top-level keys we have no use for are removed with a notice
(config/nemo_keys.py). ``compose_plain`` runs the same steps in process with Hydra's compose API
(tests, tools) and hands its notices to the caller's ``Notices``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from gym_rollouts.config.env_yaml import ENV_YAML, load_env_yaml
from gym_rollouts.config.nemo_compat import ModelBlocks, translate_nemo_gym
from gym_rollouts.config.nemo_keys import check_directives, settle_top_level
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.overrides import (check_group_choices, config_group_names, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.config.yaml_file import load_yaml_file, one_line
from gym_rollouts.errors import ConfigError

__all__ = ["compose_plain", "conf_dir", "load_yaml_file", "merge_config_paths", "one_line", "to_plain"]

CLI_SOURCE = "the command line"
_OURS = frozenset(CollectConfig.__dataclass_fields__) | {"hydra", "defaults"}


def conf_dir() -> Path:
    """The ``conf/`` directory: inside the installed package, or the repository's top level."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_conf", here.parent / "conf"):
        if (candidate / "collect.yaml").is_file():
            return candidate
    raise ConfigError(f"cannot find the conf/ directory next to {here}")  # pragma: no cover


def merge_config_paths(cfg: DictConfig, cli_overrides: Sequence[str] = (), *, cwd: str | Path | None = None,
                       notices: Notices | None = None) -> DictConfig:
    """Merge ``env.yaml`` (from ``cwd``, default: the process's working directory) and the files
    of ``config_paths`` into ``cfg`` and re-apply the command line on top (module doc)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    blocks = ModelBlocks()
    env = load_env_yaml(base, notices, blocks)
    paths = _as_path_list(env.get("config_paths") if env is not None and "config_paths" in env
                          and not _cli_sets_config_paths(cli_overrides) else cfg.get("config_paths"))
    if env is None and not paths:
        out = translate_nemo_gym(cfg, CLI_SOURCE, notices, blocks)
        blocks.check()
        return out
    expanded, files = _load_files(paths, base, notices, blocks)
    merged = copy.deepcopy(cfg)
    OmegaConf.set_struct(merged, False)  # files may add keys: unknown ones get the schema's hint
    for label, file_cfg in [*files, *([(str(base / ENV_YAML), env)] if env is not None else [])]:
        try:
            merged = OmegaConf.merge(merged, file_cfg)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot merge {label}: {one_line(exc)}") from None
    if expanded:
        merged["config_paths"] = expanded
    _reapply_cli(merged, cli_overrides)
    merged = translate_nemo_gym(merged, CLI_SOURCE, notices, blocks)
    blocks.check()
    return merged


def _cli_sets_config_paths(overrides: Sequence[str]) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == "config_paths" for o in overrides)


def _as_path_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, ListConfig)) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"config_paths must be a list of file paths, got {value!r}")


def _load_files(paths: list[str], base: Path, notices: Notices | None,
                blocks: ModelBlocks) -> tuple[list[str], list[tuple[str, DictConfig]]]:
    """Every file in ``paths``, then the ``config_paths`` the files name (each once, in order)."""
    queue = list(paths)
    files: list[tuple[str, DictConfig]] = []
    for entry in queue:  # grows while we walk it
        raw = load_yaml_file(_resolve(entry, base), label="config_paths", shown=_missing_hint(entry, base))
        check_directives(OmegaConf.to_container(raw, resolve=False), entry)
        nested = _as_path_list(raw.get("config_paths")) if "config_paths" in raw else []
        queue += [p for p in nested if p not in queue]
        files.append((entry, translate_nemo_gym(raw, entry, notices, blocks)))
    return queue, files


def _resolve(entry: str, base: Path) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else base / path


def _missing_hint(entry: str, base: Path) -> str:
    """How a path is named in messages: a relative one with where we looked (NeMo Gym also looks in
    its install root, we do not)."""
    path = Path(entry).expanduser()
    if path.is_absolute() or _resolve(entry, base).is_file():
        return entry
    return (f"{entry} (looked in {base}; NeMo Gym also looks in its install directory, gym_rollouts does "
            f"not: give the file's full path)")


def _reapply_cli(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Re-apply value overrides (our normaliser spells them all ``++key=value``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = [o for o in overrides if o.startswith("++") and not o.startswith("++config_paths=")]
    for ov in OverridesParser.create().parse_overrides(values):
        if ov.is_sweep_override():
            continue  # each sweep job sees a plain override already
        OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=False, force_add=True)


def compose_plain(overrides: Sequence[str] = (), *, config_name: str = "collect", cwd: str | Path | None = None,
                  notices: Notices | None = None,
                  extra_options: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """Compose ``conf/`` in process with Hydra's compose API, exactly as the console scripts do
    (override normalisation, ``env.yaml`` from ``cwd`` and ``config_paths`` merged, command line on
    top); for tests, tools and the Python API (gym_rollouts/api/config.py). Pass a ``Notices`` to
    receive the notices a console script prints; ``extra_options``: group options stored in Hydra's
    ConfigStore (plugin resources, resource/plugins.py), as ``check_group_choices`` takes them."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    cdir = conf_dir()
    check_group_choices(overrides, cdir, extra_options)
    normalized = normalize_overrides(overrides, config_group_names(cdir), primary_default_groups(cdir, config_name))
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=normalized)
    except HydraException as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return to_plain(merge_config_paths(cfg, normalized, cwd=cwd, notices=notices), notices)


def to_plain(cfg: DictConfig, notices: Notices | None = None) -> dict[str, Any]:
    """Resolve interpolations into a plain dict (without Hydra's own node); NeMo Gym top-level
    keys that do not apply are removed (one notice), those we cannot honour refused."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = one_line(exc).rpartition("(at ")[2].rstrip(")") or "a value"
        raise ConfigError(f"{key} is unset ('???'): give it on the command line ({key}=...), in env.yaml "
                          f"or in a config_paths file") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config: {one_line(exc)}") from None
    assert isinstance(container, dict)
    container.pop("hydra", None)
    settle_top_level(container, _OURS, notices)
    return container
