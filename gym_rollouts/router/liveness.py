"""Who answered when (pure: the caller passes the time): stall verdicts and the dead-fleet verdict.

Per server it keeps the time of its last *answer* to a request (``answered``: 2xx or 4xx, 429
included; a 5xx is a failure: vLLM's dead engine answers 500 to everything), of its last passing
health probe, its last error, and what the stall detector knows of its progress.

- **Stall** (``check_progress``): a server is stalled when it has had our calls in flight for
  ``stall_timeout_s`` without answering any of them and without its vLLM ``/metrics`` progress
  counters moving (see ``vllm_metrics.parse_progress``). A server that answers, or is idle, or whose
  counters move, is making progress; a ``/metrics`` that cannot be read at all (timeout, refused:
  a frozen process) shows none; a server whose ``/metrics`` has no such counters gets no verdict
  (a long generation cannot be told from a hang there: the read timeout bounds it). A passing ``/health`` probe
  is *not* progress: a hung vLLM engine still answers it. ``wants_progress`` says whether a
  reading is worth taking (calls in flight and no answer for ``quiet_s``), so a fleet that answers
  steadily is never polled for it.
- **Dead fleet** (``fleet_dead``): no server answered a request, passed a probe or showed moving
  progress counters for ``dead_fleet_timeout_s`` of the time the fleet was needed (calls in
  flight, or attempts failing since the last answer): a run waiting on a slow environment with
  nothing sent is not a dead fleet, and the clock starts with the first call after such a lull.
  (With health probes off and no ``/metrics``, a single generation longer than the fuse, with
  nothing else answering meanwhile, looks dead: keep the probes on, or the fuse off.)
"""

from __future__ import annotations

import math


class Liveness:
    __slots__ = ("last_answer", "last_probe_ok", "last_error", "_failed_at", "_progress_at", "_counter",
                 "_moved_at", "_started", "_needed_since", "stall_timeout_s", "dead_fleet_timeout_s")

    def __init__(self, servers: int, now: float, *, stall_timeout_s: float = 0.0,
                 dead_fleet_timeout_s: float = 0.0) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.dead_fleet_timeout_s = dead_fleet_timeout_s
        self.last_answer = [-math.inf] * servers  # the dispatcher writes it on every answer (hot path)
        self.last_probe_ok = [-math.inf] * servers
        self.last_error = [""] * servers
        self._failed_at = -math.inf  # the last failed attempt or probe, fleet-wide
        self._progress_at = [now] * servers
        self._counter: list[float | None] = [None] * servers
        self._moved_at = -math.inf  # the last time any server's progress counters moved
        self._needed_since: float | None = None  # start of the current stretch the fleet was needed
        self._started = now  # the fleet counts as alive when the run starts (start-up just checked it)

    def reset_start(self, now: float) -> None:
        """The fuse starts counting now (the dispatcher opened: start-up has just checked the fleet)."""
        self._started = now

    # -- what the dispatcher and the prober report ---------------------------------------------------
    def answered(self, index: int, now: float) -> None:
        self.last_answer[index] = now

    def failed(self, index: int, now: float, error: str) -> None:
        """An attempt on ``index`` failed without an answer that proves it alive."""
        self.last_error[index] = error
        self._failed_at = now

    def probe(self, index: int, ok: bool, now: float, detail: str = "") -> None:
        if ok:
            self.last_probe_ok[index] = now
        else:
            self.last_error[index] = f"health probe: {detail}"
            self._failed_at = now

    # -- stalls -----------------------------------------------------------------------------------------
    def _progress(self, index: int) -> float:
        return max(self._progress_at[index], self.last_answer[index])

    def wants_progress(self, index: int, now: float, in_flight: int, quiet_s: float) -> bool:
        """Whether to read ``index``'s progress counters now: calls in flight, no answer for ``quiet_s``."""
        if self.stall_timeout_s <= 0:
            return False
        if in_flight <= 0:
            self._progress_at[index] = now  # idle is not stalled: the clock starts with the next call
            return False
        return now - self._progress(index) >= quiet_s

    def check_progress(self, index: int, now: float, in_flight: int, counter: float | None, *,
                       reachable: bool = True) -> bool:
        """Feed one progress-counter reading; True when ``index`` is stalled. ``counter`` None with
        ``reachable``: the page has no counters (no verdict); ``reachable=False``: ``/metrics``
        could not be read (no progress either)."""
        if self.stall_timeout_s <= 0:
            return False
        previous = self._counter[index]
        if counter is not None:
            self._counter[index] = counter
        if counter is not None and previous is not None and counter != previous:
            self._progress_at[index] = self._moved_at = now
            return False
        if in_flight <= 0:
            self._progress_at[index] = now
            return False
        if reachable and (counter is None or previous is None):
            return False  # no counters, or a first reading: nothing to compare with
        return now - self._progress(index) >= self.stall_timeout_s

    def reset_progress(self, index: int, now: float) -> None:
        """After a stall verdict (its calls abandoned): the next call starts a fresh clock."""
        self._progress_at[index] = now

    # -- the fleet --------------------------------------------------------------------------------------
    def alive_at(self) -> float:
        """The last time any server answered a request, passed a probe or showed progress (or the start)."""
        return max(self._started, self._moved_at, max(self.last_answer), max(self.last_probe_ok))

    def fleet_dead(self, now: float, in_flight: int) -> bool:
        """Called periodically (the dispatcher's fuse, at least once a second)."""
        if self.dead_fleet_timeout_s <= 0:
            return False
        alive = self.alive_at()
        if not (in_flight > 0 or self._failed_at > alive):
            self._needed_since = None  # a lull: nothing asked of the fleet
            return False
        if self._needed_since is None:
            self._needed_since = self._failed_at if self._failed_at > alive else now
        return now - max(alive, self._needed_since) >= self.dead_fleet_timeout_s

    def describe(self, urls: list[str], now: float) -> str:
        """One clause per server: when it last answered, and its last error."""
        parts = []
        for index, url in enumerate(urls):
            last = max(self.last_answer[index], self.last_probe_ok[index])
            when = "never answered" if last == -math.inf else f"last answered {now - last:.0f} s ago"
            error = self.last_error[index] or "no error seen"
            parts.append(f"{url} ({when}; last error: {error})")
        return "; ".join(parts)
