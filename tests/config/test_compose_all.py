"""Every option of every config group under conf/ composes and builds the typed config.

Groups and options are discovered from the conf/ directory itself, so a new option file is
covered the moment it exists. Each composed option must also carry the values its file sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from gym_rollouts.config.compose import compose_plain, conf_dir
from gym_rollouts.config.schema import CollectConfig, build_collect_config

CONF = conf_dir()
SKIPPED_DIRS = {"local"}  # git-ignored, each user's own


def _primary_defaults() -> set[str]:
    """Groups the primary config chooses in its defaults list (chosen with ``g=o``, others ``+g=o``)."""
    defaults = yaml.safe_load((CONF / "collect.yaml").read_text())["defaults"]
    return {next(iter(d)) for d in defaults if isinstance(d, dict)}


def _discover() -> list[tuple[str, str, Path]]:
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) < 2 or rel.parts[0] in SKIPPED_DIRS:
            continue
        group = "/".join(rel.parts[:-1])
        found.append((group, path.stem, path))
    return found


OPTIONS = _discover()


def _package(group: str, path: Path) -> tuple[str, ...]:
    """Where an option's keys land: its ``# @package`` header, else the group path."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("# @package"):
            pkg = line.split(None, 2)[2].strip()
            if pkg == "_global_":
                return ()
            return tuple(pkg.replace("_group_", group.replace("/", ".")).split("."))
        if line and not line.startswith("#"):
            break
    return tuple(group.split("/"))


def _leaves(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict) and node:
        out = []
        for key, value in node.items():
            out += _leaves(value, (*prefix, str(key)))
        return out
    return [(prefix, node)]


def _lookup(cfg: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        assert isinstance(cfg, dict) and key in cfg, f"{'.'.join(keys)!r} missing from the composed config"
        cfg = cfg[key]
    return cfg


def _hydra_compose(override: str) -> dict:
    """The full composition, Hydra's own node included (unresolved: it holds runtime values)."""
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("collect", overrides=[override], return_hydra_config=True)
    except MissingConfigException as exc:
        if "hydra/launcher/" in str(exc):
            pytest.skip(f"{override} needs a Hydra launcher plugin that is not installed: {str(exc).splitlines()[0]}")
        raise
    return OmegaConf.to_container(cfg, resolve=False)


def _spelled(group: str, option: str) -> str:
    if group.startswith("hydra/") or group in _primary_defaults():
        return f"{group}={option}"
    return f"+{group}={option}"


def test_discovery_finds_the_documented_groups():
    groups: dict[str, set[str]] = {}
    for group, option, _ in OPTIONS:
        groups.setdefault(group, set()).add(option)
    assert {"vllm", "vllm_for_training", "vllm_completions"} <= groups["model"]
    assert {"embedded", "local"} <= groups["servers"]
    assert {"exact_match", "arithmetic", "weather"} <= groups["resource"]
    assert groups["agent"] and groups["router"]


@pytest.mark.parametrize(("group", "option", "path"), OPTIONS, ids=lambda v: "" if isinstance(v, Path) else str(v))
def test_option_composes_and_builds(group: str, option: str, path: Path):
    spelled = _spelled(group, option)
    full = _hydra_compose(spelled)
    raw = compose_plain([spelled])
    assert isinstance(build_collect_config(raw), CollectConfig)
    body = yaml.safe_load(path.read_text()) or {}
    body.pop("defaults", None)
    for keys, value in _leaves(body, _package(group, path)):
        if isinstance(value, str) and "${" in value:
            continue  # interpolations resolve elsewhere (checked by the knob tests)
        assert _lookup(full, keys) == value, f"{spelled}: {'.'.join(keys)}"
        if keys[0] != "hydra":
            assert _lookup(raw, keys) == value, f"{spelled}: {'.'.join(keys)} (resolved)"


def test_model_options_mirror_nemo_gym():
    """The three model options differ exactly where NeMo Gym's three vllm_model YAMLs do."""
    base = build_collect_config(compose_plain(["model=vllm"])).model
    training = build_collect_config(compose_plain(["model=vllm_for_training"])).model
    completions = build_collect_config(compose_plain(["model=vllm_completions"])).model
    assert (base.return_token_id_information, base.use_completions_api) == (False, False)
    assert (training.return_token_id_information, training.use_completions_api) == (True, False)
    assert (completions.return_token_id_information, completions.use_completions_api) == (False, True)


def test_servers_local_is_a_fleet_not_the_embedded_backend():
    cfg = build_collect_config(compose_plain(["servers=local"]))
    assert len(cfg.model.base_url) == 2 and not cfg.uses_embedded_backend
    assert build_collect_config(compose_plain([])).uses_embedded_backend
