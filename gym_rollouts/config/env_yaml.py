"""NeMo Gym's ``env.yaml``: the file in the working directory that NeMo Gym reads on every command
(the usual home of ``policy_base_url``, ``policy_api_key``, ``policy_model_name``, secrets and
sometimes ``config_paths``). We read it the same way.

Precedence, as NeMo Gym 0.4.0 does it (``GlobalConfigDictParser.parse``, checked with
``ng_dump_config``): ``config_paths`` files < ``env.yaml`` < the command line. ``env.yaml`` wins
over the files (its values are merged after them), the command line wins over both, and
``config_paths`` comes from the command line when given there, else from ``env.yaml``.
NeMo Gym falls back to an ``env.yaml`` in its install directory; we have none, so only the
working directory counts. Loading it adds one notice naming the file.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gym_rollouts.config.nemo_compat import ModelBlocks, translate_nemo_gym
from gym_rollouts.config.nemo_keys import check_directives
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.yaml_file import load_yaml_file

ENV_YAML = "env.yaml"


def env_yaml_path(cwd: Path) -> Path | None:
    """``<cwd>/env.yaml`` when it exists (a directory of that name is an error when loading)."""
    path = Path(cwd) / ENV_YAML
    return path if path.exists() else None


def load_env_yaml(cwd: Path, notices: Notices | None = None, blocks: ModelBlocks | None = None) -> DictConfig | None:
    """The working directory's ``env.yaml``, NeMo Gym blocks translated, or None when there is none."""
    path = env_yaml_path(cwd)
    if path is None:
        return None
    shown = str(path.resolve())
    raw = load_yaml_file(path, label=ENV_YAML, shown=shown)
    check_directives(OmegaConf.to_container(raw, resolve=False), shown)
    if notices is not None:
        notices.add(f"loaded {shown} (NeMo Gym's env.yaml: it overrides config_paths files; the command "
                    f"line overrides it)")
    return translate_nemo_gym(raw, shown, notices, blocks)
