"""Reading vLLM's ``/metrics`` (Prometheus text) for the throughput hints (pure).

Only what ``doctor`` needs: samples summed over label sets by metric name, and the labels of the
``vllm:cache_config_info`` info-gauge (``enable_prefix_caching``). Older vLLM names
(``gpu_cache_usage_perc``, ``gpu_prefix_cache_*``) are accepted as fallbacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Metrics:
    sums: dict[str, float] = field(default_factory=dict)
    labels: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def value(self, *names: str) -> float | None:
        """The first of ``names`` present (summed over engines / label sets)."""
        for name in names:
            if name in self.sums:
                return self.sums[name]
        return None

    @property
    def prefix_caching(self) -> bool | None:
        """True / False from ``vllm:cache_config_info``, None when vLLM does not say."""
        for labels in self.labels.get("vllm:cache_config_info", []):
            flag = labels.get("enable_prefix_caching")
            if flag is not None:
                return flag.lower() == "true"
        return None

    @property
    def prefix_cache_queries(self) -> float | None:
        return self.value("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")

    @property
    def prefix_cache_hits(self) -> float | None:
        return self.value("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")

    @property
    def waiting(self) -> float | None:
        return self.value("vllm:num_requests_waiting")

    @property
    def running(self) -> float | None:
        return self.value("vllm:num_requests_running")

    @property
    def kv_cache_usage(self) -> float | None:
        return self.value("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")

    @property
    def preemptions(self) -> float | None:
        return self.value("vllm:num_preemptions_total")


def parse_metrics(text: str) -> Metrics:
    out = Metrics()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, raw_labels, raw_value = m.group(1), m.group(3), m.group(4)
        try:
            value = float(raw_value)
        except ValueError:
            continue
        out.sums[name] = out.sums.get(name, 0.0) + value
        if name.endswith("_info") and raw_labels:
            out.labels.setdefault(name, []).append(dict(_LABEL.findall(raw_labels)))
    return out
