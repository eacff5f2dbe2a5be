"""Live progress: a tqdm bar on a terminal, periodic single lines otherwise (logs)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from gym_rollouts.engine.stats import RunStats


def _postfix(stats: RunStats) -> dict[str, Any]:
    elapsed = stats.elapsed()
    return {"tok/s": f"{stats.output_tokens / elapsed:.0f}", "inflight": stats.in_flight,
            "fail": stats.failed, "ctx": stats.context_length_stops}


class Progress:
    def __init__(self, mode: str = "auto", *, line_every_s: float = 10.0) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._bar: tqdm | None = None
        self._line_every_s = line_every_s
        self._last_line = 0.0

    def __call__(self, stats: RunStats, dispatcher: Any) -> None:
        finished = stats.done + stats.failed
        if self.mode == "bar":
            if self._bar is None:
                self._bar = tqdm(total=stats.total, unit="rollout", dynamic_ncols=True, file=sys.stderr)
            self._bar.n = finished
            self._bar.set_postfix(_postfix(stats), refresh=False)
            self._bar.refresh()
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self._line_every_s:
                self._last_line = now
                total = f"/{stats.total}" if stats.total else ""
                rate = finished / stats.elapsed()
                print(f"[collect] {finished}{total} rollouts, {rate:.1f}/s, "
                      + ", ".join(f"{k}={v}" for k, v in _postfix(stats).items()), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
