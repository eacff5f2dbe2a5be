"""Configuration: typed schema, Hydra composition helpers, NeMo Gym compatibility, redaction."""

from gym_rollouts.config.schema import CollectConfig, build_collect_config

__all__ = ["CollectConfig", "build_collect_config"]
