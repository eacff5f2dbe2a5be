"""Configuration: typed schema, Hydra composition helpers, NeMo Gym compatibility, redaction."""

from gym_rollouts.config import resolvers as _resolvers  # noqa: F401  (registers ${gym_positive_int_env:...})
from gym_rollouts.config.schema import CollectConfig, build_collect_config

__all__ = ["CollectConfig", "build_collect_config"]
