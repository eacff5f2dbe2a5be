"""Server-side counters and their Prometheus rendering under vLLM's metric names.

Tracks in-flight requests (for `vllm:num_requests_running`), token totals and a simulated
prefix cache: prompts are hashed in 16-token blocks, chained like vLLM's block hashes, and a
block counts as a hit when an earlier prompt produced the same chained hash.

`vllm:generation_tokens_total` moves *during* a generation, as vLLM's does: a request's tokens
count as generated in proportion to the time it has spent generating (`begin_generation` /
`end_generation`), so a slow generation shows progress and a hung request (the "hang" fault) none.
"""

from __future__ import annotations

import itertools
import time
from typing import Sequence

BLOCK_SIZE = 16
_MAX_CACHED_BLOCKS = 200_000
_KV_CAPACITY_SEQUENCES = 16  # kv_cache_usage_perc: in-flight tokens / (16 * max_model_len)


class ServerMetrics:
    def __init__(self, model_name: str, max_model_len: int, prefix_caching: bool) -> None:
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
        self._blocks: set[int] = set()
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

    def record(self, prompt_ids: Sequence[int], completion_tokens: int) -> None:
        self.requests_ok += 1
        self.prompt_tokens += len(prompt_ids)
        self.generation_tokens += completion_tokens
        if self.prefix_caching:
            self._prefix_lookup(prompt_ids)

    def _prefix_lookup(self, ids: Sequence[int]) -> None:
        self.prefix_queries += len(ids)
        blocks = self._blocks
        if len(blocks) > _MAX_CACHED_BLOCKS:
            blocks.clear()
        h = 0
        hitting = True
        for start in range(0, len(ids) - BLOCK_SIZE + 1, BLOCK_SIZE):
            h = hash((h, tuple(ids[start:start + BLOCK_SIZE])))
            if hitting and h in blocks:
                self.prefix_hits += BLOCK_SIZE
            else:
                hitting = False
                blocks.add(h)

    def render(self) -> str:
        lb = self._labels
        kv = min(1.0, self.running_tokens / float(_KV_CAPACITY_SEQUENCES * self.max_model_len))
        rows = [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", "", self.running),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", "", self.waiting),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", "", kv),
            ("vllm:prefix_cache_queries", "counter", "Prefix cache queries, in terms of number of queried tokens.", "_total", self.prefix_queries),
            ("vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached tokens.", "_total", self.prefix_hits),
            ("vllm:num_preemptions", "counter", "Cumulative number of preemption from the engine.", "_total", 0),
            ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", "_total", self.prompt_tokens),
            ("vllm:generation_tokens", "counter", "Number of generation tokens processed.", "_total",
             self.generation_tokens + self._cancelled_tokens + self._tokens_in_progress()),
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

    def stats(self) -> dict:
        return {
            "running": self.running,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "prefix_cache_queries": self.prefix_queries,
            "prefix_cache_hits": self.prefix_hits,
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
        }
