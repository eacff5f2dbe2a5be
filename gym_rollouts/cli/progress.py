"""Live progress: a tqdm bar on a terminal, periodic single lines otherwise (logs).

Shows rollouts finished / total (earlier runs included on resume), rollouts/s and generated
tokens/s of this run, in-flight rollouts, failed rollouts, retries (re-attempted rollouts +
retried model calls) and context-length stops; with several servers also how many are up and
their in-flight counts (the bar), or one line per server with its outcomes and latency (lines
mode); with admission (``num_samples_in_parallel: auto`` or ``router.max_rollouts_per_server``) each
server's live rollouts and their limit, ``live/limit`` (the limit moves with the server's KV room). Called by the engine's ticker with ``RunStats``.

The rates are ``RunStats.rates()``, the definition the final summary uses (engine/stats.py), so
the last progress line and the summary print the same rollouts/s and tokens/s; the bar hides
tqdm's own rate (a smoothed count of finished jobs, failures included, from when the bar appeared).
tqdm is imported when the first bar is drawn: lines mode and ``progress=off`` never need it.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from gym_rollouts.engine.stats import RunStats

if TYPE_CHECKING:
    from tqdm import tqdm


# tqdm's default right part without its rate (``{rate_fmt}``): the postfix carries ours
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
BAR_FORMAT_NO_TOTAL = "{n_fmt} rollouts [{elapsed}{postfix}]"


def fields(stats: RunStats) -> dict[str, Any]:
    rollouts_per_s, tokens_per_s = stats.rates()
    # strings: tqdm would re-format numbers (3 significant digits), the summary prints them as is
    return {"rollouts/s": str(rollouts_per_s), "tok/s": str(tokens_per_s),
            "in-flight": stats.in_flight, "failed": stats.failures,
            "retries": stats.attempt_retries + stats.request_retries, "ctx-stops": stats.context_length_stops}


def _host(url: str) -> str:
    return url.split("://", 1)[-1].removesuffix("/v1")


def admitted(s: dict[str, Any]) -> str | None:
    """``live/limit`` of one server under admission (None without a limit)."""
    limit = s.get("admit_limit")
    return None if limit is None else f"{s.get('rollouts') or 0}/{limit}"


def fleet_field(servers: list[dict[str, Any]]) -> str:
    """Compact fleet state for the bar: ``2/3 up, in-flight 31/30/0`` (+ ``, rollouts 12/16 9/12 0/4``
    under admission: live/limit per server)."""
    up = sum(1 for s in servers if s.get("up"))
    out = f"{up}/{len(servers)} up, in-flight " + "/".join(str(s.get("in_flight", 0)) for s in servers)
    limits = [admitted(s) for s in servers]
    if any(limits):
        out += ", rollouts " + " ".join(x or "-" for x in limits)
    return out


def server_lines(servers: list[dict[str, Any]]) -> list[str]:
    out = []
    for s in servers:
        p99 = s.get("p99_latency_ms")
        live = admitted(s)
        out.append(f"[collect]   {_host(str(s.get('server')))} {'up' if s.get('up') else 'DOWN'}: "
                   + (f"rollouts {live}, " if live else "") +
                   f"in-flight {s.get('in_flight', 0)}, completed {s.get('completed', 0)}, "
                   f"failed {s.get('failed', 0)}, retried {s.get('retried', 0)}, "
                   f"p99 {'-' if p99 is None else f'{p99:.0f} ms'}")
    return out


def line(stats: RunStats) -> str:
    total = stats.total
    done = f"{stats.finished}/{total}" if total else str(stats.finished)
    pct = f" ({100.0 * stats.finished / total:.1f}%)" if total else ""
    return f"[collect] {done} rollouts{pct}, " + ", ".join(f"{k} {v}" for k, v in fields(stats).items())


def new_bar(stats: RunStats) -> tqdm:
    from tqdm import tqdm  # here, not at import: only the bar mode uses it

    return tqdm(total=stats.total, initial=stats.prior_done + stats.prior_failed, unit="rollout",
                dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                bar_format=BAR_FORMAT if stats.total else BAR_FORMAT_NO_TOTAL)


class Progress:
    def __init__(self, mode: str = "auto", *, line_every_s: float = 10.0) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._bar: tqdm | None = None
        self._line_every_s = line_every_s
        self._last_line = time.monotonic()
        self._last: RunStats | None = None
        self._printed: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mode in ("bar", "lines")

    def __call__(self, stats: RunStats) -> None:
        self._last = stats
        if self.mode == "bar":
            if self._bar is None:
                self._bar = new_bar(stats)
            self._bar.n = stats.finished
            postfix = fields(stats)
            if len(stats.servers) > 1 or any(admitted(s) for s in stats.servers):
                postfix["servers"] = fleet_field(stats.servers)
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.refresh()
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self._line_every_s:
                self._last_line = now
                self._print_line(stats)

    def _print_line(self, stats: RunStats) -> None:
        self._printed = line(stats)
        lines = [self._printed]
        if len(stats.servers) > 1 or any(admitted(s) for s in stats.servers):
            lines += server_lines(stats.servers)
        print("\n".join(lines), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._last is not None and line(self._last) != self._printed:
            self._print_line(self._last)  # the final figures (the engine stopped the clock)
