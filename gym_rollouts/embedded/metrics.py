"""Server-side counters and their Prometheus rendering under vLLM's metric names.

Tracks in-flight requests (for `vllm:num_requests_running`), token totals and a simulated
prefix cache: prompts are hashed in 16-token blocks, chained like vLLM's block hashes, and a
block counts as a hit when an earlier prompt produced the same chained hash.

With the simulated GPU (`attach_sim`, see kv_sim.py) the running/waiting gauges, KV usage and
preemptions come from the step scheduler, and the prefix cache is looked up when a request is
first scheduled (its hits make its prefill cheaper) instead of when it is answered.

`vllm:generation_tokens_total` moves *during* a generation, as vLLM's does: a request's tokens
count as generated in proportion to the time it has spent generating (`begin_generation` /
`end_generation`), so a slow generation shows progress and a hung request (the "hang" fault) none.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Sequence

from .kv_sim import PrefixCache

if TYPE_CHECKING:
    from .sim_loop import SimLoop

_KV_CAPACITY_SEQUENCES = 16  # kv_cache_usage_perc: in-flight tokens / (16 * max_model_len)


class ServerMetrics:
    def __init__(self, model_name: str, max_model_len: int, prefix_caching: bool,
                 prefix_cache_blocks: int = 0) -> None:
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.prefix_caching = prefix_caching
        self.running = 0
        self.waiting = 0  # queued for a free slot (max_num_seqs)
        self.running_tokens = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.requests_ok = 0
        self.requests_failed = 0
        self._prefix_cache = PrefixCache(prefix_cache_blocks)
        self.sim: SimLoop | None = None
        self._generating: dict[int, tuple[float, float, int]] = {}  # id -> (started, seconds, tokens)
        self._ids = itertools.count()
        self._cancelled_tokens = 0.0
        self._labels = f'{{engine="0",model_name="{model_name}"}}'

    def begin_generation(self, tokens: int, seconds: float) -> int:
        """A request starts generating ``tokens`` over ``seconds``; returns its handle."""
        handle = next(self._ids)
        self._generating[handle] = (time.monotonic(), seconds, tokens)
        return handle

    def end_generation(self, handle: int, finished: bool) -> None:
        """Its generation is over (``record`` then counts its tokens in full) or was cancelled (the
        tokens generated so far stay counted: the counter never goes back)."""
        started, seconds, tokens = self._generating.pop(handle)
        if not finished and seconds > 0:
            self._cancelled_tokens += tokens * min(1.0, (time.monotonic() - started) / seconds)

    def _tokens_in_progress(self) -> float:
        now = time.monotonic()
        return sum(tokens * min(1.0, (now - started) / seconds)
                   for started, seconds, tokens in self._generating.values() if seconds > 0)

    def attach_sim(self, sim: "SimLoop") -> None:
        """Report the simulated GPU's gauges (the server's step-scheduled engine)."""
        self.sim = sim

    def record(self, prompt_ids: Sequence[int], completion_tokens: int) -> None:
        self.requests_ok += 1
        self.prompt_tokens += len(prompt_ids)
        self.generation_tokens += completion_tokens
        if self.prefix_caching and self.sim is None:  # simulated: looked up when scheduled
            self.prefix_lookup(prompt_ids)

    def prefix_lookup(self, ids: Sequence[int]) -> int:
        """Count a prefix-cache query of ``ids``; returns its hit tokens (0 with caching off)."""
        if not self.prefix_caching:
            return 0
        hits = self._prefix_cache.lookup(ids)
        self.prefix_queries += len(ids)
        self.prefix_hits += hits
        return hits

    def render(self) -> str:
        lb = self._labels
        running, waiting, kv, preemptions, generated = self._gauges()
        rows = [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", "", running),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", "", waiting),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", "", kv),
            ("vllm:prefix_cache_queries", "counter", "Prefix cache queries, in terms of number of queried tokens.", "_total", self.prefix_queries),
            ("vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached tokens.", "_total", self.prefix_hits),
            ("vllm:num_preemptions", "counter", "Cumulative number of preemption from the engine.", "_total", preemptions),
            ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", "_total", self.prompt_tokens),
            ("vllm:generation_tokens", "counter", "Number of generation tokens processed.", "_total",
             generated),
        ]
        out = []
        for name, kind, help_text, suffix, value in rows:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
            out.append(f"{name}{suffix}{lb} {float(value)}\n")
        out.append(
            "# HELP vllm:request_success Count of successfully processed requests.\n"
            "# TYPE vllm:request_success counter\n"
            f'vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{self.model_name}"}} '
            f"{float(self.requests_ok)}\n"
        )
        return "".join(out)

    def _gauges(self) -> tuple[int, int, float, int, float]:
        """(running, waiting, kv usage, preemptions, generation tokens so far)."""
        generated = self.generation_tokens + self._cancelled_tokens + self._tokens_in_progress()
        sim = self.sim
        if sim is None:
            kv = min(1.0, self.running_tokens / float(_KV_CAPACITY_SEQUENCES * self.max_model_len))
            return self.running, self.waiting, kv, 0, generated
        sched = sim.sched
        kv = sched.usage() if sched.capacity else \
            min(1.0, sched.held_tokens / float(_KV_CAPACITY_SEQUENCES * self.max_model_len))
        return (self.running + sched.num_running, self.waiting + sched.num_waiting, kv, sched.preemptions,
                generated + sim.cancelled_tokens + sim.tokens_in_flight())

    def stats(self) -> dict:
        running, waiting, kv, preemptions, _ = self._gauges()
        out = {
            "running": running,
            "waiting": waiting,
            "kv_cache_usage_perc": kv,
            "num_preemptions": preemptions,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "prefix_cache_queries": self.prefix_queries,
            "prefix_cache_hits": self.prefix_hits,
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
        }
        if self.sim is not None:
            sched = self.sim.sched
            out["sim"] = {"kv_cache_tokens": sched.capacity, "kv_held_tokens": sched.held_tokens,
                          "prefilled_tokens": sched.prefilled_tokens,
                          "recomputed_tokens": sched.recomputed_tokens}
        return out
