"""Map NeMo Gym's server blocks onto our config (files in ``config_paths``, ``env.yaml``, the
command line).

NeMo Gym nests its model settings as
``policy_model: {responses_api_models: {vllm_model: {base_url: ..., ...}}}``; we keep those
settings flat under ``model``. Each ``vllm_model`` field is honoured (one of ``ModelConfig``'s),
accepted as not applicable (named in one notice line per block), or refused with what to do
(``nemo_keys.VLLM_MODEL_RULES``). Other model blocks (a judge, ``policy_model_reasoning_off``)
are accepted and reported as not used, as long as some source gives ``policy_model``.
Resources servers, agent servers, other model implementations are refused with a message naming
them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, ValueNode

from gym_rollouts.config.nemo_keys import VLLM_MODEL_RULES, not_applicable_line
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ConfigError

POLICY = "policy_model"
_VLLM = "policy_model.responses_api_models.vllm_model"
_MODEL_FIELDS = frozenset(ModelConfig.__dataclass_fields__)
_SERVER_KINDS = ("responses_api_models", "resources_servers", "responses_api_agents")


@dataclass
class ModelBlocks:
    """The NeMo Gym model blocks one composition met, over all its sources."""

    policy_sources: list[str] = field(default_factory=list)
    others: list[tuple[str, str]] = field(default_factory=list)  # (block name, source)

    def check(self) -> None:
        """Secondary model blocks are fine next to a policy; alone, they may be a renamed policy."""
        if self.others and not self.policy_sources:
            named = ", ".join(f"'{name}' ({source})" for name, source in self.others)
            raise ConfigError(
                f"NeMo Gym model server block {named} but no '{POLICY}' block: only '{POLICY}' maps onto "
                f"our model config. If it is your policy, rename the top-level key to '{POLICY}'; if it is "
                f"a judge or secondary model, also pass your policy's YAML (e.g. vllm_model.yaml) in "
                f"config_paths, or remove it")


def translate_nemo_gym(cfg: DictConfig, source: str, notices: Notices | None = None,
                       blocks: ModelBlocks | None = None) -> DictConfig:
    """``cfg`` with NeMo Gym server blocks rewritten onto ``model`` (the policy's fields win over
    a plain ``model:`` of the same source); ``cfg`` itself when it has none."""
    keys = [str(k) for k in cfg.keys()
            if isinstance(cfg._get_node(k), DictConfig) and _is_server_block(cfg._get_node(k))]
    if not keys:
        return cfg
    blocks = blocks if blocks is not None else ModelBlocks()
    out = copy.deepcopy(cfg)
    OmegaConf.set_struct(out, False)
    models = []
    for key in keys:
        translated = _translate_server_block(key, out._get_node(key), source, notices, blocks)
        if translated is not None:
            models.append(translated)
        del out[key]
    if models:
        base = out._get_node("model") if "model" in out else None
        out["model"] = OmegaConf.merge(base if isinstance(base, DictConfig) else {}, *models)
    return out


def _is_server_block(node: DictConfig) -> bool:
    return any(k in node for k in _SERVER_KINDS)


def _translate_server_block(key: str, node: DictConfig, source: str, notices: Notices | None,
                            blocks: ModelBlocks) -> DictConfig | None:
    for kind in node.keys():
        if kind == "resources_servers":
            names = ", ".join(str(n) for n in node[kind].keys())
            raise ConfigError(
                f"{source}: NeMo Gym resources server '{key}' ({names}) is what ng_run starts, not a collect "
                f"setting: start it with ng_run as before, drop this file from collect's config_paths and point "
                f"collect at it: resource=nemo_gym resource.params.head_url=http://127.0.0.1:11000 (or "
                f"resource.params.url=http://host:port); README: Bring your NeMo Gym environments"
            )
        if kind == "responses_api_agents":
            names = ", ".join(str(n) for n in node[kind].keys())
            raise ConfigError(
                f"{source}: NeMo Gym agent server '{key}' ({names}) is what ng_run starts: collect runs the "
                f"simple tool loop itself and reads each agent's environment from the head server "
                f"(resource=nemo_gym resource.params.head_url=...); drop this file from collect's config_paths"
            )
        if kind != "responses_api_models":
            raise ConfigError(f"{source}: unsupported NeMo Gym server type '{key}.{kind}'")
    models = node["responses_api_models"]
    if not isinstance(models, DictConfig) or len(models) != 1:
        found = list(models.keys()) if isinstance(models, DictConfig) else models
        raise ConfigError(f"{source}: {key} must hold exactly one model, found {found}")
    impl = str(next(iter(models.keys())))
    if key != POLICY:
        blocks.others.append((key, source))
        if notices is not None:
            notices.add(f"{source}: NeMo Gym model server '{key}' ({impl}) accepted, not used: only "
                        f"'{POLICY}' drives rollouts [see docs/nemo_gym_config.md]")
        return None
    if impl != "vllm_model":
        raise ConfigError(f"{source}: NeMo Gym model implementation '{impl}' is not supported; only vllm_model is")
    blocks.policy_sources.append(source)
    return _translate_vllm_fields(models[impl], source, notices)


def _translate_vllm_fields(fields: Any, source: str, notices: Notices | None) -> DictConfig:
    if not isinstance(fields, DictConfig):
        raise ConfigError(f"{source}: {_VLLM} must be a mapping of vllm_model fields")
    model = OmegaConf.create({})
    accepted: list[tuple[str, str]] = []
    refused: list[str] = []
    for field_name in fields.keys():
        name = str(field_name)
        if name in _MODEL_FIELDS:
            model[name] = fields._get_node(name)
        elif name in VLLM_MODEL_RULES:
            problem = VLLM_MODEL_RULES[name].check(f"{_VLLM}.{name}", as_plain(fields._get_node(name)))
            if problem:
                refused.append(problem)
            else:
                accepted.append((name, VLLM_MODEL_RULES[name].reason))
        else:
            refused.append(f"{_VLLM}.{name} is not supported: not a vllm_model field gym_rollouts knows (honoured: "
                           f"{', '.join(sorted(_MODEL_FIELDS))}; see docs/nemo_gym_config.md for the rest)")
    problem = _reasoning_history_problem(fields)
    if problem:
        refused.append(problem)
    if refused:
        raise ConfigError(f"{source}: " + "; ".join(refused))
    if accepted and notices is not None:
        notices.add(not_applicable_line(accepted, f"{source}: {_VLLM}"))
    return model


def _reasoning_history_problem(fields: DictConfig) -> str | None:
    """``preserve_reasoning_in_assistant_content: true`` keeps earlier reasoning in NeMo Gym
    whatever ``uses_interleaved_reasoning`` says; ours keeps it only with interleaving on."""
    preserve = as_plain(fields._get_node("preserve_reasoning_in_assistant_content")) if (
        "preserve_reasoning_in_assistant_content" in fields) else False
    interleaved = as_plain(fields._get_node("uses_interleaved_reasoning")) if (
        "uses_interleaved_reasoning" in fields) else True
    if preserve is True and interleaved is False:
        return (f"{_VLLM}.preserve_reasoning_in_assistant_content=true with uses_interleaved_reasoning=false "
                f"is not supported: NeMo Gym then keeps earlier reasoning in the history, ours would drop "
                f"it; set uses_interleaved_reasoning: true (reasoning is then sent inline in the assistant "
                f"content, as preserve_reasoning_in_assistant_content does)")
    return None


def as_plain(value: Any) -> Any:
    """A node as plain Python, interpolations left unresolved (the file stands alone here)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=False)
    if isinstance(value, ValueNode):
        return value._value()
    return value
