"""OmegaConf resolvers our ``conf/`` uses (registered once, when the config package is imported).

``${gym_positive_int_env:NAME,DEFAULT}``: the environment variable ``NAME`` as a positive integer,
``DEFAULT`` when it is unset or empty; any other value is an error naming the variable (NeMo Gym's
``NEMO_GYM_MAX_ROLLOUT_ATTEMPTS`` sets ``max_attempts`` this way).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf


def positive_int_env(name: str, default: Any = None) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r} must be a positive integer (unset it to use "
                         f"the default {default!r})")
    return value


def register() -> None:
    if not OmegaConf.has_resolver("gym_positive_int_env"):
        OmegaConf.register_new_resolver("gym_positive_int_env", positive_int_env)


register()
