"""Configuration of the embedded vLLM-compatible server, and its command line.

Owns `EmbeddedConfig` (frozen) and the two-way mapping between a config and the
`python -m gym_rollouts.embedded` arguments, so the CLI, the in-process server and the
subprocess launcher can never disagree about a flag.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

FAULT_KINDS = ("429", "500", "503", "drop", "hang", "slow", "drip", "echo_auth")
# answered 200 with the real reply made unusable afterwards (faults.corrupt_body)
BODY_FAULT_KINDS = ("garbage", "bad_shape", "bad_usage", "no_usage")
REASONING_FIELDS = ("reasoning", "reasoning_content")


@dataclass(frozen=True)
class EmbeddedConfig:
    """Everything that shapes one embedded server. All fields have CLI flags."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = let the OS pick a free port
    model_name: str = "gym-tiny"
    max_model_len: int = 4096
    latency_ms: float = 0.0
    latency_per_token_ms: float = 0.0
    reasoning: bool = False  # the scripted model thinks in <think>...</think> first
    reasoning_parser: str | None = None  # like vLLM --reasoning-parser: split reasoning out
    reasoning_field: str = "reasoning"  # "reasoning_content" emulates vLLM < 0.16
    tool_parser: bool = True  # False: like vLLM without --enable-auto-tool-choice
    return_token_ids_supported: bool = True  # False: ignore return_token_ids (old vLLM)
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("503",)
    fault_retry_after: str | None = None  # Retry-After header of injected 429/503 answers (seconds or HTTP date)
    seed: int = 0
    prefix_caching: bool = True
    fail_health: bool = False
    keepalive_timeout: float = 5.0  # vLLM/uvicorn's default idle keep-alive (seconds)
    max_num_seqs: int = 0  # like vLLM --max-num-seqs: requests generating at once (0 = no limit)
    # simulated GPU (kv_sim.py); either of the first two switches to the step-scheduled engine
    prefill_ms_per_token: float = 0.0  # prefill cost per prompt token missing the prefix cache
    kv_cache_tokens: int = 0  # KV-cache capacity in tokens; full -> preempt + recompute (0 = unlimited)
    prefix_cache_blocks: int = 0  # prefix-cache capacity in 16-token blocks, LRU (0 = 200000)
    version: str = field(default="0.32.0")

    def __post_init__(self) -> None:
        kinds = tuple(self.fault_kinds)
        object.__setattr__(self, "fault_kinds", kinds)
        validate_fault_kinds(kinds)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate}")
        if self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.prefill_ms_per_token < 0:
            raise ValueError(f"prefill_ms_per_token must be >= 0, got {self.prefill_ms_per_token}")
        for name in ("kv_cache_tokens", "prefix_cache_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = default), got {getattr(self, name)}")
        if 0 < self.kv_cache_tokens < self.max_model_len:
            raise ValueError(
                f"kv_cache_tokens ({self.kv_cache_tokens}) must be >= max_model_len ({self.max_model_len}) "
                "so that one full-length sequence fits (vLLM refuses to start otherwise); "
                "raise --kv-cache-tokens or lower --max-model-len")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(
                f"reasoning_field must be one of {REASONING_FIELDS}, got {self.reasoning_field!r}"
            )

    @property
    def simulates_gpu(self) -> bool:
        """True when requests go through the step-scheduled engine (kv_sim.py, sim_loop.py)."""
        return self.kv_cache_tokens > 0 or self.prefill_ms_per_token > 0

    def with_port(self, port: int) -> "EmbeddedConfig":
        return replace(self, port=port)


def validate_fault_kinds(kinds: Sequence[str]) -> None:
    bad = [k for k in kinds if k not in FAULT_KINDS and k not in BODY_FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {bad}; choose from {[*FAULT_KINDS, *BODY_FAULT_KINDS]}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_arg_parser() -> argparse.ArgumentParser:
    d = EmbeddedConfig()
    p = argparse.ArgumentParser(
        prog="python -m gym_rollouts.embedded",
        description="Serve a scripted model over vLLM's OpenAI-compatible HTTP protocol.",
    )
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0 = pick a free port")
    p.add_argument("--model-name", "--served-model-name", dest="model_name", default=d.model_name)
    p.add_argument("--max-model-len", type=int, default=d.max_model_len)
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--latency-per-token-ms", type=float, default=d.latency_per_token_ms)
    p.add_argument("--reasoning", action="store_true", help="the model emits <think>...</think>")
    p.add_argument("--reasoning-parser", default=None, metavar="NAME")
    p.add_argument("--reasoning-field", default=d.reasoning_field, choices=REASONING_FIELDS)
    p.add_argument("--no-tool-parser", dest="tool_parser", action="store_false")
    p.add_argument(
        "--no-return-token-ids", dest="return_token_ids_supported", action="store_false"
    )
    p.add_argument("--fault-rate", type=float, default=d.fault_rate)
    p.add_argument("--fault-kinds", type=_csv, default=d.fault_kinds, metavar="K1,K2")
    p.add_argument("--fault-retry-after", default=None, metavar="SECONDS|HTTP-DATE")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false")
    p.add_argument("--fail-health", action="store_true")
    p.add_argument("--keepalive-timeout", type=float, default=d.keepalive_timeout)
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs,
                   help="requests generating at once; others wait (0 = no limit)")
    sim = p.add_argument_group(
        "simulated GPU",
        "Setting --prefill-ms-per-token or --kv-cache-tokens runs requests through a vLLM-like "
        "step scheduler: each step takes --latency-per-token-ms plus --prefill-ms-per-token per "
        "prompt token prefilled in it (prefix-cache hits are free) and gives every running request "
        "one token; --latency-ms is then a fixed delay before a request joins the queue.")
    sim.add_argument("--prefill-ms-per-token", type=float, default=d.prefill_ms_per_token, metavar="MS",
                     help="prefill cost per prompt token that misses the prefix cache (default 0)")
    sim.add_argument("--kv-cache-tokens", type=int, default=d.kv_cache_tokens, metavar="N",
                     help="KV-cache capacity in tokens (>= --max-model-len); a running request holds "
                          "prompt + generated tokens; when the next step does not fit, the most recently "
                          "started request is preempted, requeued first and recomputed (0 = unlimited)")
    sim.add_argument("--prefix-cache-blocks", type=int, default=d.prefix_cache_blocks, metavar="N",
                     help="prefix-cache capacity in 16-token blocks, least recently used evicted "
                          "(0 = 200000)")
    p.add_argument("--version-string", dest="version", default=d.version)
    return p


def config_from_argv(argv: Sequence[str] | None = None) -> EmbeddedConfig:
    ns = build_arg_parser().parse_args(argv)
    names = {f.name for f in fields(EmbeddedConfig)}
    return EmbeddedConfig(**{k: v for k, v in vars(ns).items() if k in names})


def config_to_argv(cfg: EmbeddedConfig) -> list[str]:
    """The CLI arguments that rebuild `cfg` (only the ones that differ from defaults)."""
    d = EmbeddedConfig()
    out: list[str] = []
    valued = {
        "host": "--host",
        "port": "--port",
        "model_name": "--model-name",
        "max_model_len": "--max-model-len",
        "latency_ms": "--latency-ms",
        "latency_per_token_ms": "--latency-per-token-ms",
        "reasoning_parser": "--reasoning-parser",
        "reasoning_field": "--reasoning-field",
        "fault_rate": "--fault-rate",
        "fault_retry_after": "--fault-retry-after",
        "seed": "--seed",
        "keepalive_timeout": "--keepalive-timeout",
        "max_num_seqs": "--max-num-seqs",
        "prefill_ms_per_token": "--prefill-ms-per-token",
        "kv_cache_tokens": "--kv-cache-tokens",
        "prefix_cache_blocks": "--prefix-cache-blocks",
        "version": "--version-string",
    }
    for name, flag in valued.items():
        value = getattr(cfg, name)
        if value != getattr(d, name) and value is not None:
            out += [flag, str(value)]
    if cfg.fault_kinds != d.fault_kinds:
        out += ["--fault-kinds", ",".join(cfg.fault_kinds)]
    switches = {
        "reasoning": ("--reasoning", True),
        "tool_parser": ("--no-tool-parser", False),
        "return_token_ids_supported": ("--no-return-token-ids", False),
        "prefix_caching": ("--no-prefix-caching", False),
        "fail_health": ("--fail-health", True),
    }
    for name, (flag, when) in switches.items():
        if getattr(cfg, name) is when and getattr(d, name) is not when:
            out.append(flag)
    return out
