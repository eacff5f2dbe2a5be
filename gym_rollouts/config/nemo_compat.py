"""Map NeMo Gym config YAML shapes onto ours (used for files given in ``config_paths``).

NeMo Gym nests its model settings as
``policy_model: {responses_api_models: {vllm_model: {base_url: ..., ...}}}``; we keep those
settings flat under ``model``. Anything NeMo Gym has that we do not support (resources servers,
agent servers, other model servers) is refused with a message naming it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, ValueNode

from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ConfigError

# vllm_model fields that only matter to NeMo Gym's process launcher: accepted and dropped.
_LAUNCHER_ONLY_FIELDS = frozenset({"entrypoint", "host", "port", "domain", "name", "description", "num_workers"})
# vllm_model fields we have no equivalent for, accepted only at the value that changes nothing.
_NO_OP_VALUES: dict[str, tuple[Any, ...]] = {"default_headers": (None, {}), "render_chat_template": (False,)}
_MODEL_FIELDS = frozenset(ModelConfig.__dataclass_fields__)


def translate_nemo_gym(file_cfg: DictConfig, source: str) -> DictConfig:
    """Return ``file_cfg`` with NeMo Gym server blocks rewritten onto our keys."""
    out = OmegaConf.create({})
    for key in list(file_cfg.keys()):
        node = file_cfg._get_node(key)  # keep interpolations unresolved
        if isinstance(node, DictConfig) and _is_server_block(node):
            _translate_server_block(str(key), node, source, out)
        else:
            out[key] = node
    return out


def _is_server_block(node: DictConfig) -> bool:
    return any(k in node for k in ("responses_api_models", "resources_servers", "responses_api_agents"))


def _translate_server_block(key: str, node: DictConfig, source: str, out: DictConfig) -> None:
    for kind in node.keys():
        if kind == "resources_servers":
            names = ", ".join(str(n) for n in node[kind].keys())
            raise ConfigError(
                f"{source}: NeMo Gym resources server '{key}' ({names}) is not supported; "
                f"choose one of our resources with resource=<name> (see conf/resource/)"
            )
        if kind == "responses_api_agents":
            names = ", ".join(str(n) for n in node[kind].keys())
            raise ConfigError(
                f"{source}: NeMo Gym agent server '{key}' ({names}) is not supported; "
                f"the agent loop is built in (agent=tool_loop, agent.max_steps=...)"
            )
        if kind != "responses_api_models":
            raise ConfigError(f"{source}: unsupported NeMo Gym server type '{key}.{kind}'")
    if key != "policy_model":
        raise ConfigError(
            f"{source}: NeMo Gym model server '{key}' is not supported; only 'policy_model' "
            f"(the policy) maps onto our model config"
        )
    models = node["responses_api_models"]
    if len(models) != 1:
        raise ConfigError(f"{source}: policy_model must hold exactly one model, found {list(models.keys())}")
    impl = str(next(iter(models.keys())))
    if impl != "vllm_model":
        raise ConfigError(f"{source}: NeMo Gym model implementation '{impl}' is not supported; only vllm_model is")
    fields = models[impl]
    model = OmegaConf.create({})
    for field in fields.keys():
        name = str(field)
        if name in _LAUNCHER_ONLY_FIELDS:
            continue
        if name in _NO_OP_VALUES:
            value = as_plain(fields._get_node(name))
            if value in _NO_OP_VALUES[name]:
                continue
            raise ConfigError(
                f"{source}: policy_model.responses_api_models.vllm_model.{name}={value!r} is not supported "
                f"(only {' or '.join(repr(v) for v in _NO_OP_VALUES[name])}, which changes nothing)"
            )
        if name not in _MODEL_FIELDS:
            raise ConfigError(
                f"{source}: policy_model.responses_api_models.vllm_model.{name} is not supported "
                f"(supported: {', '.join(sorted(_MODEL_FIELDS))})"
            )
        model[name] = fields._get_node(name)
    out["model"] = model


def as_plain(value: Any) -> Any:
    """A node as plain Python, interpolations left unresolved (the file stands alone here)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=False)
    if isinstance(value, ValueNode):
        return value._value()
    return value
