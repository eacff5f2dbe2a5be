"""Shared Hydra plumbing for our console scripts.

``hydra_app(task)`` runs ``task(cfg_dict, hydra_cfg)`` as a Hydra app over ``conf/``: it first
normalises the command line (``+key``/``key`` both work, see config/overrides.py), merges
``config_paths`` with the command line winning, and turns our ``ConfigError`` into a one-line
message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from gym_rollouts.config.compose import conf_dir, merge_config_paths, to_plain
from gym_rollouts.config.overrides import (check_group_choices, config_group_names, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.errors import ConfigError, InputError

EXIT_CONFIG = 2
# for commands that only print: no output dir, no log files, no Hydra logging
QUIET_HYDRA = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled",
               "hydra/hydra_logging=disabled")

Task = Callable[[dict[str, Any], Any], int]


def composed(cfg: Any) -> dict[str, Any]:
    """The final plain config for a Hydra job (config_paths merged, CLI on top)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    # raw strings: iterating the node would resolve a value such as limit='${x}' as an interpolation
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    return to_plain(merge_config_paths(cfg, overrides))


def hydra_app(task: Task, *, config_name: str = "collect", extra_overrides: tuple[str, ...] = ()) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    cdir = conf_dir()
    try:
        check_group_choices(sys.argv[1:], cdir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    argv = normalize_overrides(sys.argv[1:], config_group_names(cdir), primary_default_groups(cdir, config_name))
    sys.argv = [sys.argv[0], *extra_overrides, *argv]
    codes: list[int] = []

    @hydra.main(config_path=str(cdir), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> None:
        try:
            codes.append(task(composed(cfg), HydraConfig.get()))
        except (ConfigError, InputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            codes.append(EXIT_CONFIG)

    _main()
    sys.exit(max(codes) if codes else 0)
