"""What we do with each NeMo Gym config key that is not one of our own: the tables and their checks.

Three outcomes, never a fourth (see docs/nemo_gym_config.md for the full list):

- **honoured**: the key is ours too (a ``CollectConfig`` / ``ModelConfig`` field); not in here;
- **accepted, not applicable**: the key means nothing to gym_rollouts at any value, or at the
  value given; it is removed and named in one notice line;
- **refused**: a value whose effect we cannot reproduce; a ``ConfigError`` says what to do.

Two tables: ``VLLM_MODEL_RULES`` for fields of a ``policy_model.responses_api_models.vllm_model``
block (NeMo Gym 0.4.0 and GitHub main), ``TOP_LEVEL_RULES`` for NeMo Gym's reserved top-level
keys and the other global settings of ``ng_collect_rollouts`` / ``env.yaml``. Pure data and pure
functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from gym_rollouts.config.notices import Notices
from gym_rollouts.errors import ConfigError

DOC = "docs/nemo_gym_config.md"


def _any(_value: Any) -> bool:
    return True


def _falsy(value: Any) -> bool:
    return value is None or value is False or value == "" or value == {} or value == []


def _capture_off(value: Any) -> bool:
    return _falsy(value) or (isinstance(value, Mapping) and not value.get("enabled"))


@dataclass(frozen=True)
class Rule:
    """One NeMo Gym key we do not honour: accepted when ``accepts(value)``, else refused."""

    reason: str                                  # why it does not apply (shown in the notice)
    accepts: Callable[[Any], bool] = _any
    fix: str = ""                                # what to do when the value is refused

    def check(self, where: str, value: Any) -> str | None:
        """None when accepted; else the refusal message for ``where=value``."""
        if self.accepts(value):
            return None
        return f"{where}={value!r} is not supported: {self.fix}"


_LAUNCHER = "NeMo Gym's server launcher; gym_rollouts starts no NeMo Gym server"
_VLLM_LAUNCHER = "set by NeMo Gym's server launcher; gym_rollouts calls vLLM directly, no model server in between"

VLLM_MODEL_RULES: dict[str, Rule] = {
    **{k: Rule(_VLLM_LAUNCHER) for k in
       ("entrypoint", "host", "port", "name", "num_workers", "domain", "description", "datasets")},
    "request_prompt_and_generation_token_ids": Rule(
        "with token capture we always ask vLLM for inline prompt and generation ids (return_token_ids) "
        "and fall back to /tokenize when a server does not send them"),
    "sequential_reasoning_allowed": Rule(
        "our agent loop ends a rollout at the first model turn without tool calls, so it never asks the "
        "model to continue a reasoning-only turn"),
    "preserve_reasoning_in_assistant_content": Rule(
        "our adapter always sends earlier reasoning inline as <think> text in the assistant content (with "
        "uses_interleaved_reasoning: true), as NeMo Gym does with true; with false NeMo Gym sends it in the "
        "message's reasoning_content field instead, whatever this file says (docs/vllm_adapter.md section 3)"),
    "tokenizer": Rule("only read with render_chat_template: true, which is not supported"),
    "is_responses_native": Rule(
        "false: the chat-completions path, which is ours", _falsy,
        "gym_rollouts drives vLLM's /v1/chat/completions (or /v1/completions with use_completions_api: "
        "true) and has no Responses-native path; set is_responses_native: false or remove it"),
    "default_headers": Rule(
        "empty: no extra headers to send", _falsy,
        "gym_rollouts sends no extra HTTP headers, only 'Authorization: Bearer <policy_api_key>'; remove "
        "default_headers (a bearer token belongs in policy_api_key)"),
    "audio_root": Rule(
        "unset: no audio inputs", lambda v: v is None,
        "audio inputs (metadata.audio_path / audio_paths / audio_data) are not supported; remove audio_root"),
    "render_chat_template": Rule(
        "false: no client-side chat-template rendering, as ours", _falsy,
        "client-side chat-template rendering is not supported; set render_chat_template: false (completions "
        "mode then takes a [user] or [system, user] prompt) or use the chat API (use_completions_api: false)"),
    "supply_prefix_token_ids": Rule(
        "false: no prefix supply", _falsy,
        "it needs vLLM's non-stock required_prefix_token_ids extension, which gym_rollouts does not send; "
        "set supply_prefix_token_ids: false"),
}

_WANDB = "Weights & Biases logging, which gym_rollouts does not do"
_CAPTURE = "NeMo Gym's observability / capture files; rows carry token ids with model=vllm_for_training"

TOP_LEVEL_RULES: dict[str, Rule] = {
    **{k: Rule(_LAUNCHER) for k in (
        "entrypoint", "default_host", "disallowed_ports", "head_server_deps", "python_version",
        "pip_install_verbose", "use_absolute_ip", "uv_pip_set_python", "skip_venv_if_present",
        "ray_head_node_address", "port_range_low", "port_range_high", "dry_run", "uv_cache_dir", "uv_venv_dir",
        "nemo_gym_log_dir", "model_endpoint_readiness_timeout_seconds", "allow_openai_version_skew",
        "results_dir", "cache_dir", "component_name", "error_on_almost_servers")},
    "hf_token": Rule("Hugging Face token of NeMo Gym's dataset tools; gym_rollouts downloads nothing"),
    "verbose": Rule("NeMo Gym's debug logging switch"),
    "json": Rule("JSON output of NeMo Gym's gym CLI listings (doctor has --json)"),
    "query": Rule("filter of NeMo Gym's gym CLI listings"),
    "_inherit_from": Rule("has no effect at the top level in NeMo Gym either"),
    "_copy": Rule("has no effect at the top level in NeMo Gym either"),
    "observability_enabled": Rule(_CAPTURE),
    "model_call_capture_dir": Rule(_CAPTURE),
    **{k: Rule(_WANDB) for k in ("wandb_project", "wandb_name", "wandb_api_key", "upload_rollouts_to_wandb")},
    "disable_aggregation": Rule("we always write <stem>_aggregate_metrics.json; merge_rollouts merges shards"),
    "skip_verification_reward": Rule("only read with skip_verification: true, which is not supported"),
    "skip_verification": Rule(
        "false: the verifier runs, as ours always does", _falsy,
        "gym_rollouts always runs the verifier for the reward; remove skip_verification"),
    "token_id_capture": Rule(
        "capture off; rows carry token ids with model=vllm_for_training", _capture_off,
        "token ids go into the output rows instead: use model=vllm_for_training "
        "(model.return_token_id_information=true) and remove token_id_capture"),
    "rollout_collection_driver": Rule(
        "unset: the standard collection", lambda v: v is None or v == "",
        "custom collection drivers are not supported; remove rollout_collection_driver"),
    "skills": Rule(
        "unset: no Agent Skills", lambda v: v is None or v == {} or v == {"path": None},
        "NeMo Gym's run-level Agent Skills (skills.path) are not supported: the simple tool loop gets the "
        "row's own tools only; remove skills"),
}

# NeMo Gym's config directives (global_config.py); below the top level they rewrite the config.
DIRECTIVE_KEYS = ("_inherit_from", "_copy", "_delete_key")
DIRECTIVE_RESOLVERS = ("${inherit_from:", "${copy:")


def not_applicable_line(names_reasons: list[tuple[str, str]], source: str = "") -> str:
    """One notice line: keys grouped by reason, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name, reason in names_reasons:
        groups.setdefault(reason, []).append(name)
    body = "; ".join(f"{', '.join(names)} ({reason})" for reason, names in groups.items())
    where = f"{source}: " if source else ""
    return f"{where}accepted, not applicable: {body} [see {DOC}]"


def settle_top_level(plain: dict[str, Any], known: frozenset[str], notices: Notices | None) -> None:
    """Remove from ``plain`` the NeMo Gym top-level keys that do not apply (named in one notice),
    refuse those whose value we cannot honour (all of them in one ``ConfigError``). Keys in
    ``known`` (our schema) are never touched; keys in neither are left for the schema's
    unknown-key check."""
    accepted: list[tuple[str, str]] = []
    refused: list[str] = []
    for key in [k for k in plain if k not in known and k in TOP_LEVEL_RULES]:
        rule = TOP_LEVEL_RULES[key]
        problem = rule.check(key, plain[key])
        if problem:
            refused.append(problem)
        else:
            accepted.append((key, rule.reason))
            del plain[key]
    if refused:
        raise ConfigError("; ".join(refused))
    if accepted and notices is not None:
        notices.add(not_applicable_line(accepted))


def find_directives(value: Any, source: str, path: str = "") -> list[str]:
    """NeMo Gym's ``_inherit_from`` / ``_copy`` / ``_delete_key`` below the top level and
    ``${inherit_from:...}`` / ``${copy:...}`` values anywhere in a raw (unresolved) container:
    one message each (we do not implement them, and an unexpanded directive would change values)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if path and key in DIRECTIVE_KEYS:
                found.append(f"{source}: NeMo Gym's {key} directive (at {where}) is not supported")
            found += find_directives(inner, source, where)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += find_directives(inner, source, f"{path}[{i}]")
    elif isinstance(value, str) and value.strip().startswith(DIRECTIVE_RESOLVERS):
        found.append(f"{source}: NeMo Gym's {value.strip().split(':', 1)[0][2:]} directive "
                     f"(at {path or 'the top level'}) is not supported")
    return found


def check_directives(container: Any, source: str) -> None:
    found = find_directives(container, source)
    if found:
        raise ConfigError("; ".join(found) + "; write the values out in the file (NeMo Gym's ng_dump_config "
                                             "prints them expanded)")
