"""Typed, validated configuration: frozen dataclasses built from the composed Hydra config.

Everything below the CLI receives these objects, never a DictConfig. ``build_collect_config``
checks every key and type and raises ``ConfigError`` with a did-you-mean hint for unknown keys.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.errors import ConfigError
from gym_rollouts.router.retry import DEFAULT_RETRY_BUDGET, check_budget
from gym_rollouts.sweep.shard import shard_problems


@dataclass(frozen=True)
class ModelConfig:
    """The vLLM adapter settings; field names follow NeMo Gym's ``vllm_model``."""

    base_url: tuple[str, ...] = ()
    api_key: str = "EMPTY"
    model: str | None = None
    return_token_id_information: bool = False
    uses_reasoning_parser: bool = True
    uses_interleaved_reasoning: bool = True
    replace_developer_role_with_system: bool = False
    use_completions_api: bool = False
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    sampling_overrides: Mapping[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    clamp_max_tokens_to_context: bool = True
    check_token_continuity: bool = True


@dataclass(frozen=True)
class EmbeddedServersConfig:
    """The embedded vLLM-compatible backend started when no ``policy_base_url`` is given."""

    model_name: str = "gym-tiny"
    max_model_len: int = 4096
    latency_ms: float = 0.0
    reasoning: bool = False
    reasoning_parser: str | None = None
    num_servers: int = 1
    startup_timeout_s: float = 30.0


HTTP_CLIENTS = ("native", "aiohttp")


@dataclass(frozen=True)
class TransportConfig:
    """HTTP client behaviour: timeouts, keep-alive, retries (the retry policy is applied by the
    router; see gym_rollouts/router/retry.py for the kinds of ``retry_budget``)."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 900.0  # send -> status line and headers (the generation itself)
    body_timeout_s: float = 10.0  # headers -> the whole body (vLLM sends it in one piece)
    call_timeout_s: float = 1800.0  # one model call in total: every attempt and backoff
    keepalive_s: float = 4.0
    max_retries: int = 8
    retry_budget: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RETRY_BUDGET))
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_deadline_s: float = 1800.0
    retry_after_max_s: float = 60.0  # the longest Retry-After (429/503) waited for
    http_client: str = "native"  # native (transport/http1.py) | aiohttp (its ClientSession)

    def __post_init__(self) -> None:
        problems = [f"transport.{name} must be > 0" for name in
                    ("connect_timeout_s", "read_timeout_s", "body_timeout_s", "call_timeout_s", "keepalive_s",
                     "backoff_base_s", "retry_deadline_s")
                    if getattr(self, name) <= 0]
        if self.retry_after_max_s < 0:
            problems.append("transport.retry_after_max_s must be >= 0 (0 = never wait for a Retry-After)")
        if self.max_retries < 0:
            problems.append("transport.max_retries must be >= 0")
        if self.http_client not in HTTP_CLIENTS:
            problems.append(f"transport.http_client must be one of {', '.join(HTTP_CLIENTS)}, not {self.http_client!r}")
        if self.backoff_max_s < self.backoff_base_s:
            problems.append("transport.backoff_max_s must be >= transport.backoff_base_s")
        problems += check_budget(self.retry_budget)
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class AdmissionConfig:
    """``num_samples_in_parallel: auto``: the per-server AIMD controller (router/admission.py)."""

    initial: int = 4  # cold-start limit of live rollouts per server
    min: int = 1  # floor per server
    max: int = 64  # ceiling per server (the worker pool is max x servers)
    target_kv: float = 0.9  # grow while the KV cache is below this; hold between it and a preemption
    increase: int = 1  # additive step per /metrics poll
    decrease: float = 0.7  # multiplicative factor on new preemptions / sustained waiting
    waiting_polls: int = 2  # polls in a row with requests waiting that count as congestion
    cooldown_polls: int = 3  # after a decrease: polls without growth or another decrease

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min <= self.initial <= self.max:
            problems.append(f"router.admission needs 1 <= min <= initial <= max; got min={self.min}, "
                            f"initial={self.initial}, max={self.max}")
        if not 0.0 < self.target_kv <= 1.0:
            problems.append("router.admission.target_kv must be in (0, 1]")
        if self.increase < 1:
            problems.append("router.admission.increase must be >= 1")
        if not 0.0 < self.decrease < 1.0:
            problems.append("router.admission.decrease must be in (0, 1), e.g. 0.7")
        if self.waiting_polls < 1 or self.cooldown_polls < 0:
            problems.append("router.admission.waiting_polls must be >= 1 and cooldown_polls >= 0")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class RouterConfig:
    """How rollouts are spread over servers (see docs/router.md)."""

    policy: str = "sticky_least_loaded"
    overload_factor: float = 2.0
    overload_min_gap: int = 24
    weights: tuple[float, ...] = ()
    health_interval_s: float = 2.0
    health_timeout_s: float = 5.0
    probe_failures_to_down: int = 2
    down_cooldown_s: float = 1.0
    down_cooldown_max_s: float = 60.0
    use_metrics: bool = False
    metrics_interval_s: float = 1.0
    kv_cache_saturation: float = 0.95
    stall_timeout_s: float = 30.0  # calls in flight, no answer, vLLM counters still: stalled (0 = off)
    dead_fleet_timeout_s: float = 60.0  # no server answered anything this long: stop the run (0 = off)
    max_rollouts_per_server: int | None = None  # cap on live rollouts per server (null: none)
    group_affinity: bool = True  # rollouts of one task go to one server (shared prompt prefilled once)
    group_max_imbalance: float = 24.0  # ... while its load exceeds the least-loaded server's by at most this
    learn_capacity: bool = True  # weights learned from latencies when router.weights is empty
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)  # num_samples_in_parallel: auto

    def __post_init__(self) -> None:
        problems = []
        if self.stall_timeout_s < 0 or self.dead_fleet_timeout_s < 0:
            problems.append("router.stall_timeout_s and router.dead_fleet_timeout_s must be >= 0 (0 = off)")
        if self.overload_factor < 1.0:
            problems.append("router.overload_factor must be >= 1")
        if self.overload_min_gap < 0:
            problems.append("router.overload_min_gap must be >= 0")
        if any(w <= 0 for w in self.weights):
            problems.append("router.weights must all be > 0")
        if self.health_interval_s < 0:
            problems.append("router.health_interval_s must be >= 0 (0 = no background probes)")
        if self.health_timeout_s <= 0 or self.metrics_interval_s <= 0 or self.down_cooldown_s <= 0:
            problems.append("router.health_timeout_s, metrics_interval_s and down_cooldown_s must be > 0")
        if self.down_cooldown_max_s < self.down_cooldown_s:
            problems.append("router.down_cooldown_max_s must be >= router.down_cooldown_s")
        if self.probe_failures_to_down < 1:
            problems.append("router.probe_failures_to_down must be >= 1")
        if not 0.0 < self.kv_cache_saturation <= 1.0:
            problems.append("router.kv_cache_saturation must be in (0, 1]")
        if self.group_max_imbalance < 0:
            problems.append("router.group_max_imbalance must be >= 0 (0: a group splits at any imbalance; "
                            "or router.group_affinity=false to turn group affinity off)")
        if self.max_rollouts_per_server is not None and self.max_rollouts_per_server < 1:
            problems.append("router.max_rollouts_per_server must be >= 1 (or null: no cap)")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class WeightsConfig:
    """Weight updates between steps: pausing and per-call weight provenance (docs/weights.md)."""

    on_version_change: str = "keep"  # a rollout whose model calls span weight versions: keep | drop | redo
    max_redos: int = 2  # redo: runs of one rollout again at most; then it is kept, flagged
    server_pause: bool = False  # pause()/resume() also pause the vLLM servers (VLLM_SERVER_DEV_MODE=1)
    version: str | None = None  # the weight-version label of the first calls (null: unknown)
    read_server_version: bool = False  # record each server's /weight_info version instead of the label

    def __post_init__(self) -> None:
        if self.max_redos < 0:
            raise ConfigError("weights.max_redos must be >= 0 (0: on_version_change=redo never runs one again)")


@dataclass(frozen=True)
class AgentConfig:
    """The agent loop."""

    name: str = "tool_loop"
    max_steps: int = 16


@dataclass(frozen=True)
class ResourceConfig:
    """The environment: tools + verifier, a Python class chosen by Hydra."""

    name: str = "arithmetic"
    cls: str = "gym_rollouts.resource.arithmetic:ArithmeticResource"
    example_dataset: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    bundled_only: bool = False  # the demo default: runs its bundled dataset, refuses the user's rows


@dataclass(frozen=True)
class DoctorConfig:
    """``doctor`` only: output form and how long one probe request may take."""

    json: bool = False
    timeout_s: float = 30.0
    sample_rows: int = 3

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.sample_rows < 0:
            raise ConfigError("doctor.timeout_s must be > 0 and doctor.sample_rows >= 0")


@dataclass(frozen=True)
class CollectConfig:
    """Everything ``collect`` needs, validated."""

    input_jsonl_fpath: str | None = None
    output_jsonl_fpath: str | None = None
    limit: int | None = None
    num_repeats: Any = 1  # an int, null (= 1, as in NeMo Gym) or {agent name: int, "_default": int}
    # null: no limit (every rollout at once, as in NeMo Gym); "auto": per server by KV room (router/admission.py)
    num_samples_in_parallel: int | str | None = 64
    resume_from_cache: bool = False
    overwrite: bool = False
    agent_name: str | None = None
    environments: Mapping[str, Any] = field(default_factory=dict)  # agent name -> environment (resource/routing.py)
    num_repeats_add_seed: bool = False  # NeMo Gym: seed = rollout index on every model call of a repeated task
    prompt_config: str | None = None  # NeMo Gym prompt YAML: builds responses_create_params.input from row fields
    disable_aggregation: bool = False  # skip the aggregate metrics file (shards aggregated later)
    responses_create_params: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = 2
    on_bad_input: str = "fail"
    progress: str = "auto"
    progress_interval_s: float = 10.0
    shutdown_grace_s: float = 10.0
    shard_index: int = 0
    num_shards: int = 1
    policy_base_url: Any = None
    policy_api_key: str = "EMPTY"
    policy_model_name: str | None = None
    config_paths: tuple[str, ...] = ()
    head_server: Mapping[str, Any] | None = None  # NeMo Gym's {host, port} of its head server
    model: ModelConfig = field(default_factory=ModelConfig)
    servers: EmbeddedServersConfig = field(default_factory=EmbeddedServersConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    resource: ResourceConfig = field(default_factory=ResourceConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)

    @property
    def uses_embedded_backend(self) -> bool:
        return not self.model.base_url

    def repeats_of(self, agent: str | None) -> int:
        """Rollouts per task for rows of ``agent`` (``num_repeats`` may be a per-agent mapping)."""
        if isinstance(self.num_repeats, int):
            return self.num_repeats
        value = self.num_repeats.get(agent) if agent is not None else None
        return value if value is not None else self.num_repeats["_default"]

    def repeats_problem(self, agent: str | None) -> str | None:
        """Why rows of ``agent`` have no repeat count (a per-agent mapping without it or ``_default``)."""
        if isinstance(self.num_repeats, int) or agent in self.num_repeats or "_default" in self.num_repeats:
            return None
        return (f"num_repeats has no entry for agent {agent!r} and no '_default' (entries: "
                f"{', '.join(sorted(self.num_repeats)) or 'none'})")


# Keys that may sit at top level of the composed config without being part of the schema.
_IGNORED_TOP_LEVEL = frozenset({"hydra", "defaults"})

_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("CollectConfig", "on_bad_input"): ("fail", "skip"),
    ("CollectConfig", "progress"): ("auto", "bar", "lines", "off"),
    ("RouterConfig", "policy"): ("sticky_least_loaded", "hash", "round_robin"),
    ("WeightsConfig", "on_version_change"): ("keep", "drop", "redo"),
}


def build_collect_config(raw: Mapping[str, Any]) -> CollectConfig:
    """Validate a plain (resolved) mapping and build the typed config."""
    data = {k: v for k, v in raw.items() if k not in _IGNORED_TOP_LEVEL}
    data = dict(data)
    model = dict(data.get("model") or {})
    model["base_url"] = normalize_base_urls(model.get("base_url", data.get("policy_base_url")))
    data["model"] = model
    if isinstance(data.get("config_paths"), str):  # one file, as compose.merge_config_paths accepts
        data["config_paths"] = [data["config_paths"]]
    if "num_repeats" in data:
        data["num_repeats"] = normalize_num_repeats(data["num_repeats"])
    cfg = _build(CollectConfig, data, path="")
    _check_ranges(cfg)
    if cfg.num_samples_in_parallel == "auto" and not cfg.router.use_metrics:  # admission reads /metrics
        cfg = dataclasses.replace(cfg, router=dataclasses.replace(cfg.router, use_metrics=True))
    return cfg


def normalize_num_repeats(value: Any) -> int | dict[str, int]:
    """``num_repeats``: null means 1 (NeMo Gym); an int >= 1; or a mapping agent name -> int >= 1
    with an optional ``_default`` for agents it does not name."""
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError("num_repeats must be >= 1")
        return value
    if isinstance(value, Mapping):
        bad = {str(k): v for k, v in value.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
        if bad or not value:
            raise ConfigError(f"num_repeats as a mapping needs agent name -> integer >= 1 (and optionally "
                              f"_default); got {dict(value)!r}")
        return {str(k): int(v) for k, v in value.items()}
    raise ConfigError(f"num_repeats must be an integer >= 1, null, or a mapping agent name -> integer; got {value!r}")


def normalize_base_urls(value: Any) -> tuple[str, ...]:
    """``policy_base_url`` may be null, one string, a comma-separated string or a list."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ConfigError(f"policy_base_url must be a URL or a list of URLs, got {type(value).__name__}: {value!r}")
    urls = tuple(u for u in items if u)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"policy_base_url entry {url!r} is not an http(s) URL (expected e.g. http://host:8000/v1)")
    return urls


def _check_ranges(cfg: CollectConfig) -> None:
    problems = []
    parallel = cfg.num_samples_in_parallel
    if isinstance(parallel, str) and parallel != "auto":
        problems.append(f"num_samples_in_parallel must be an integer >= 1, null (no limit) or auto (by each "
                        f"server's KV room); got {parallel!r}")
    elif isinstance(parallel, int) and parallel < 1:
        problems.append("num_samples_in_parallel must be >= 1 (or null: no limit, or auto)")
    if cfg.limit is not None and cfg.limit < 0:
        problems.append("limit must be >= 0 (or null for all rows)")
    if cfg.max_attempts < 1:
        problems.append("max_attempts must be >= 1")
    if cfg.shutdown_grace_s < 0 or cfg.progress_interval_s <= 0:
        problems.append("shutdown_grace_s must be >= 0 and progress_interval_s > 0")
    if cfg.agent.max_steps < 1:
        problems.append("agent.max_steps must be >= 1")
    if cfg.servers.num_servers < 1:
        problems.append("servers.num_servers must be >= 1")
    problems += shard_problems(cfg.shard_index, cfg.num_shards)
    if cfg.router.weights and len(cfg.router.weights) != (len(cfg.model.base_url) or cfg.servers.num_servers):
        problems.append("router.weights needs one weight per server (policy_base_url or servers.num_servers)")
    if problems:
        raise ConfigError("; ".join(problems))


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = _unknown_keys(cls, data, path)  # every level at once: one error lists them all
    if unknown:
        many = f"{len(unknown)} unknown config keys: " + " ".join(unknown)
        raise ConfigError(unknown[0] if len(unknown) == 1 else many)
    kwargs = {}
    for name, value in data.items():
        where = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(hints[name], value, where)
        allowed = _ENUMS.get((cls.__name__, name))
        if allowed and kwargs[name] not in allowed:
            raise ConfigError(f"{where} must be one of {', '.join(allowed)}; got {kwargs[name]!r}")
    return cls(**kwargs)


def _unknown_keys(cls: type, data: Mapping[str, Any], path: str) -> list[str]:
    """One message per key of ``data`` (and of its nested sections) that ``cls`` does not have."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    found = [_unknown_key_message(str(k), sorted(fields), path) for k in data if k not in fields]
    for name, value in data.items():
        inner = [a for a in (hints[name], *typing.get_args(hints[name])) if dataclasses.is_dataclass(a)] \
            if name in fields else []
        if inner and isinstance(value, Mapping):
            found += _unknown_keys(inner[0], value, f"{path}.{name}" if path else str(name))
    return found


def _unknown_key_message(key: str, known: list[str], path: str) -> str:
    from gym_rollouts.config.nemo_keys import DOC, VLLM_MODEL_RULES

    where = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" Did you mean '{(path + '.') if path else ''}{close[0]}'?" if close else ""
    if path == "model" and key in VLLM_MODEL_RULES:
        hint += (f" ({key} is a NeMo Gym vllm_model field we do not honour: in a policy_model block of a "
                 f"config_paths file it is accepted or refused as {DOC} says)")
    elif not path and key.startswith("policy_model"):
        hint += " (NeMo Gym's policy_model block is read from config_paths files and env.yaml; here use model.<field>)"
    scope = f"'{path}'" if path else "the top level"
    return f"Unknown config key '{where}' at {scope}.{hint}"


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for option in non_none:
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, where)
    if origin is tuple:
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}: {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict) or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {type(value).__name__}: {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - schema bug
