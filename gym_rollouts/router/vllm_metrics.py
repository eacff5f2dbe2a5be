"""Reads the load signals the router can steer by from vLLM's Prometheus ``/metrics`` text (pure).

``vllm:num_requests_waiting`` (summed over engines) and ``vllm:kv_cache_usage_perc`` (the
highest engine; older vLLM called it ``vllm:gpu_cache_usage_perc``), as a fraction in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

_WAITING = "vllm:num_requests_waiting"
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


@dataclass(frozen=True)
class ServerLoad:
    waiting: float = 0.0
    kv_usage: float = 0.0


def parse_load(text: str) -> ServerLoad | None:
    """The load seen in one ``/metrics`` page, or None when it has neither metric."""
    waiting: float | None = None
    kv: float | None = None
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name_end = min((p for p in (line.find("{"), line.find(" ")) if p >= 0), default=-1)
        if name_end < 0:
            continue
        name = line[:name_end]
        if name != _WAITING and name not in _KV:
            continue
        rest = line[line.rfind("}") + 1:] if line[name_end] == "{" else line[name_end:]
        try:
            value = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        if name == _WAITING:
            waiting = (waiting or 0.0) + value
        else:
            kv = value if kv is None else max(kv, value)
    if waiting is None and kv is None:
        return None
    return ServerLoad(waiting=waiting or 0.0, kv_usage=min(1.0, max(0.0, kv or 0.0)))
