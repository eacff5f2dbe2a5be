"""Live progress: a tqdm bar on a terminal, periodic single lines otherwise (logs).

Shows rollouts finished / total (earlier runs included on resume), rollouts/s and generated
tokens/s of this run, in-flight rollouts, failed rollouts, retries (re-attempted rollouts +
retried model calls) and context-length stops. Called by the engine's ticker with ``RunStats``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from gym_rollouts.engine.stats import RunStats


def fields(stats: RunStats) -> dict[str, Any]:
    elapsed = stats.elapsed()
    return {"rollouts/s": f"{stats.done / elapsed:.1f}", "tok/s": f"{stats.output_tokens / elapsed:.0f}",
            "in-flight": stats.in_flight, "failed": stats.failures,
            "retries": stats.attempt_retries + stats.request_retries, "ctx-stops": stats.context_length_stops}


def line(stats: RunStats) -> str:
    total = stats.total
    done = f"{stats.finished}/{total}" if total else str(stats.finished)
    pct = f" ({100.0 * stats.finished / total:.1f}%)" if total else ""
    return f"[collect] {done} rollouts{pct}, " + ", ".join(f"{k} {v}" for k, v in fields(stats).items())


class Progress:
    def __init__(self, mode: str = "auto", *, line_every_s: float = 10.0) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._bar: tqdm | None = None
        self._line_every_s = line_every_s
        self._last_line = time.monotonic()
        self._last: RunStats | None = None
        self._printed_finished = -1

    @property
    def enabled(self) -> bool:
        return self.mode in ("bar", "lines")

    def __call__(self, stats: RunStats) -> None:
        self._last = stats
        if self.mode == "bar":
            if self._bar is None:
                self._bar = tqdm(total=stats.total, initial=stats.prior_done + stats.prior_failed, unit="rollout",
                                 dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
            self._bar.n = stats.finished
            self._bar.set_postfix(fields(stats), refresh=False)
            self._bar.refresh()
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self._line_every_s:
                self._last_line = now
                self._print_line(stats)

    def _print_line(self, stats: RunStats) -> None:
        self._printed_finished = stats.finished
        print(line(stats), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._last is not None and self._last.finished != self._printed_finished:
            self._print_line(self._last)
