"""``load_config``: the typed ``CollectConfig`` from Python, composed exactly as ``collect`` does.

The same ``conf/`` groups and overrides as the command line (``model=vllm_for_training``,
``policy_base_url=...``, NeMo Gym's ``+key=value``), the same ``config_paths`` files and NeMo Gym
translation, the working directory's ``env.yaml``, resource plugins (resource/plugins.py), the same
validation (config/schema.py). Secrets: every secret value of the composed config is registered for
masking (config/secrets.py), as the CLI does; nothing is written anywhere (Hydra's compose API makes
no run directory), so a literal key is not moved into the environment. Composition notices go to
``on_notice`` (when given) and to this module's logger; nothing prints.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

from gym_rollouts.config.compose import compose_plain, conf_dir
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.schema import CollectConfig, build_collect_config
from gym_rollouts.config.secrets import register_config_secrets
from gym_rollouts.errors import ConfigError

__all__ = ["load_config"]

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def load_config(overrides: Sequence[str] = (), *, config_paths: Sequence[PathLike] | None = None,
                cwd: PathLike | None = None, on_notice: Callable[[str], None] | None = None) -> CollectConfig:
    """The config ``collect <overrides>`` would run with.

    ``overrides``: command-line style strings (``["model=vllm_for_training", "policy_base_url=http://h:8000/v1",
    "num_samples_in_parallel=128"]``). ``config_paths``: YAML files merged over the defaults in order
    (as ``+config_paths=[...]``; overrides still win). ``cwd``: where ``env.yaml`` and relative
    ``config_paths`` are looked up (default: the process's working directory). Raises ``ConfigError``
    (a message saying what to fix) for anything the CLI would refuse with exit 2."""
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"load_config(overrides=...) takes a list of strings such as ['limit=4'], got the "
                          f"single string {overrides!r}: wrap it in a list")
    args = [str(o) for o in overrides]
    if config_paths is not None:
        if isinstance(config_paths, (str, bytes, os.PathLike)):
            config_paths = [config_paths]  # type: ignore[list-item]
        args.append("++config_paths=[" + ",".join(_quoted(str(Path(p))) for p in config_paths) + "]")
    from gym_rollouts.resource.plugins import register_plugin_resources

    plugins = register_plugin_resources(conf_dir())
    notices = Notices()
    raw = compose_plain(args, cwd=cwd, notices=notices, extra_options=plugins)
    for line in notices:
        log.info("config: %s", line)
        if on_notice is not None:
            on_notice(line)
    register_config_secrets(raw)
    return build_collect_config(raw)


def _quoted(text: str) -> str:
    """A value in Hydra's override grammar: single-quoted, backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
