"""Parses vLLM's Prometheus ``/metrics`` text (pure): the one parser for the router and ``doctor``.

``parse_metrics`` keeps, per metric name, the sum over label sets (engines) -- right for counters
and for ``vllm:num_requests_waiting`` / ``_running`` -- and the largest value, which is what a
usage gauge such as ``vllm:kv_cache_usage_perc`` means for the server (its fullest engine; two
engines at 0.5 are 50% full, not 100%). It also keeps the labels of ``*_info`` info-gauges
(``vllm:cache_config_info`` says ``enable_prefix_caching``). Older vLLM names
(``gpu_cache_usage_perc``, ``gpu_prefix_cache_*``) are accepted as fallbacks.

``parse_load`` is the router's view: waiting requests (summed over engines), KV-cache usage (the
highest engine) as a fraction in [0, 1], and for admission (router/admission.py) the preemption
counter ``vllm:num_preemptions_total`` and the running requests (both summed over engines; None
when the page does not have them).

``parse_progress`` is the stall detector's view, read without parsing the whole page: the sum of
the counters that move while the server works (``PROGRESS_COUNTERS``: generated and prefilled
tokens, finished requests, engine steps), or None when the page has none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_WAITING = "vllm:num_requests_waiting"
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_PREEMPTIONS = ("vllm:num_preemptions_total", "vllm:num_preemptions")
PROGRESS_COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:request_success_total",
                     "vllm:iteration_tokens_total_count")


@dataclass
class Metrics:
    sums: dict[str, float] = field(default_factory=dict)    # counters, queue lengths: over engines
    maxima: dict[str, float] = field(default_factory=dict)  # usage gauges: the fullest engine
    labels: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # *_info label sets

    def value(self, *names: str) -> float | None:
        """The first of ``names`` present, summed over engines / label sets."""
        return next((self.sums[n] for n in names if n in self.sums), None)

    def highest(self, *names: str) -> float | None:
        """The first of ``names`` present, its largest value over engines / label sets."""
        return next((self.maxima[n] for n in names if n in self.maxima), None)

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
        return self.value(_WAITING)

    @property
    def running(self) -> float | None:
        return self.value("vllm:num_requests_running")

    @property
    def kv_cache_usage(self) -> float | None:
        return self.highest(*_KV)

    @property
    def preemptions(self) -> float | None:
        return self.value(*_PREEMPTIONS)


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
        out.maxima[name] = max(out.maxima.get(name, value), value)
        if name.endswith("_info") and raw_labels:
            out.labels.setdefault(name, []).append(dict(_LABEL.findall(raw_labels)))
    return out


@dataclass(frozen=True)
class ServerLoad:
    waiting: float = 0.0
    kv_usage: float = 0.0
    preemptions: float | None = None  # a counter: admission looks at its increments
    running: float | None = None


def parse_load(text: str) -> ServerLoad | None:
    """The load seen in one ``/metrics`` page, or None when it has neither metric."""
    m = parse_metrics(text)
    waiting, kv = m.waiting, m.kv_cache_usage
    if waiting is None and kv is None:
        return None
    return ServerLoad(waiting=waiting or 0.0, kv_usage=min(1.0, max(0.0, kv or 0.0)), preemptions=m.preemptions,
                      running=m.running)


def parse_progress(text: str) -> float | None:
    """The sum of ``PROGRESS_COUNTERS`` over engines and label sets (None: none of them present).
    Any change between two readings means the server did some work in between."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(PROGRESS_COUNTERS):
            continue
        name, _, rest = line.partition("{")
        if rest:  # labels: the value follows the closing brace
            name = name.rstrip()
            rest = rest.rpartition("}")[2]
        else:
            name, _, rest = line.partition(" ")
        if name not in PROGRESS_COUNTERS:  # a longer name sharing the prefix
            continue
        try:
            total += float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        seen = True
    return total if seen else None
