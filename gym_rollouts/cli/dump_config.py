"""``dump_config``: print the fully composed, resolved config as YAML, secrets masked."""

from __future__ import annotations

from typing import Any

import yaml

from gym_rollouts.cli.app import QUIET_HYDRA, hydra_app
from gym_rollouts.config.redact import redact
from gym_rollouts.config.schema import build_collect_config


def render(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(redact(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _task(cfg: dict[str, Any], _hydra: Any) -> int:
    build_collect_config(cfg)  # validate: unknown keys and bad types are reported, not printed
    print(render(cfg), end="")
    return 0


def main() -> None:
    hydra_app(_task, extra_overrides=QUIET_HYDRA)


if __name__ == "__main__":
    main()
