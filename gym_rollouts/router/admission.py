"""KV-aware admission (pure, no I/O): how many live rollouts each server may hold.

With ``num_samples_in_parallel: auto`` one ``AdmissionController`` keeps, per server, an
``admit_limit`` on the rollouts whose affinity is that server. It is fed one ``Observation`` per
``/metrics`` poll (vLLM's KV-cache usage, waiting requests, the preemption counter, running
requests) plus our live rollouts there, and answers the server's new limit. AIMD, as TCP (and
prime-rl's orchestrator, from engine metrics) does:

- **cold start**: ``initial`` per server (at most the ceiling); until the first congestion signal
  the limit doubles per clean poll (slow start), bounded by how many more sequences the KV room
  seen on the last poll would hold (``running * (target_kv - kv) / kv``; at least ``increase``);
- **grow** additively (``+increase`` per poll) while the KV usage is below ``target_kv``, nothing
  waits and no new preemption happened, and only while the limit binds (our rollouts there are
  within ``increase`` of it): an unused limit does not inflate;
- **shrink** multiplicatively (``x decrease``, at least by one) on new preemptions, or on
  ``waiting_polls`` polls in a row with requests waiting; then ``cooldown_polls`` polls with
  neither growth nor a further decrease, and no further decrease while our rollouts there still
  exceed the limit (the rollouts already live drain meanwhile: one congestion episode costs one
  decrease);
- **hysteresis** (no oscillation at steady state): KV usage in ``[target_kv, full)`` holds the
  limit; after a decrease the limit grows back to one below the level where congestion was seen
  (the *mark*) and stays there; only after ``probe_polls`` clean polls in a row (first
  ``4 x cooldown_polls``) does it probe the mark itself. Congestion again at the mark confirms it:
  the limit steps back by one (not multiplicatively) and the wait before the next probe doubles
  (up to ``MAX_PROBE_POLLS``), so a limit that fits stays put instead of sawing; clean at the mark
  for ``probe_polls`` polls, the mark is dropped and additive growth resumes;
- within ``[min, ceiling]`` always; the ceiling is ``max`` or the per-server cap
  (``router.max_rollouts_per_server``) when lower.

A server whose ``/metrics`` answers without vLLM's load metrics (a non-vLLM peer) is *unmeasured*:
it keeps a fixed limit (the per-server cap, else the ceiling) until the metrics appear. A poll
that fails (server down, timeout) leaves the limit as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GROW, SHRINK, HOLD, FIXED, UNCHANGED = "grow", "shrink", "hold", "fixed", "unchanged"
MAX_PROBE_POLLS = 256


@dataclass(frozen=True)
class AdmissionSettings:
    """The controller's knobs (``router.admission`` and ``router.max_rollouts_per_server``)."""

    initial: int = 4
    min: int = 1
    max: int = 64
    target_kv: float = 0.9
    increase: int = 1
    decrease: float = 0.7
    waiting_polls: int = 2
    cooldown_polls: int = 3
    cap: int | None = None  # router.max_rollouts_per_server

    @property
    def ceiling(self) -> int:
        return self.max if self.cap is None else max(self.min, min(self.max, self.cap))

    @property
    def fixed_limit(self) -> int:
        """The limit of a server that cannot be measured."""
        return self.cap if self.cap is not None else self.ceiling


@dataclass(frozen=True)
class Observation:
    """One ``/metrics`` poll of one server."""

    kv_usage: float  # [0, 1]
    waiting: float = 0.0
    preemptions: float | None = None  # vllm:num_preemptions_total (a counter); None: not reported
    running: float | None = None


@dataclass
class ServerAdmission:
    """One server's controller state."""

    limit: int
    measured: bool = True  # False: no vLLM load metrics seen on its /metrics: a fixed limit
    slow_start: bool = True
    last_preemptions: float | None = None
    waiting_streak: int = 0
    clean_streak: int = 0
    hold: int = 0  # polls left in the cooldown after a decrease
    congested_at: int | None = None  # the mark: the limit when congestion was last seen
    probe_polls: int = 4  # clean polls in a row before probing the mark
    increases: int = 0
    decreases: int = 0
    lowest: int = 0
    highest: int = 0


class AdmissionController:
    """Per-server AIMD on ``/metrics`` observations (see the module doc)."""

    def __init__(self, settings: AdmissionSettings, servers: int) -> None:
        self.settings = settings
        start = max(settings.min, min(settings.initial, settings.ceiling))
        self.state = [ServerAdmission(limit=start, lowest=start, highest=start, probe_polls=self._base_probe)
                      for _ in range(servers)]

    @property
    def _base_probe(self) -> int:
        return max(4, 4 * self.settings.cooldown_polls)

    def limit(self, index: int) -> int:
        return self.state[index].limit

    def observe(self, index: int, obs: Observation | None, *, rollouts: int, answered: bool = True) -> str:
        """Feed one poll of server ``index`` (``obs`` None: no load metrics on the page, or,
        with ``answered`` False, no answer at all); returns what happened (GROW, SHRINK, HOLD,
        FIXED: the server became unmeasured, UNCHANGED)."""
        st, cfg = self.state[index], self.settings
        if obs is None:
            if not answered:  # down or slow: the health probes deal with it; the limit stays
                st.waiting_streak = 0
                return UNCHANGED
            if not st.measured:
                return UNCHANGED
            st.measured = False
            self._set(st, cfg.fixed_limit)
            return FIXED
        if not st.measured:  # metrics appeared: start over from the cold-start limit
            st.measured, st.slow_start, st.last_preemptions = True, True, None
            self._set(st, max(cfg.min, min(cfg.initial, cfg.ceiling)))
        preempted = self._new_preemptions(st, obs.preemptions)
        st.waiting_streak = st.waiting_streak + 1 if obs.waiting > 0 else 0
        if preempted or st.waiting_streak >= cfg.waiting_polls:
            return self._congested(st, rollouts)
        if st.hold > 0:
            st.hold -= 1
            st.clean_streak = 0
            return HOLD
        if obs.waiting > 0 or obs.kv_usage >= cfg.target_kv:
            st.clean_streak = 0
            return HOLD  # the hysteresis band: full enough, not overfull
        st.clean_streak += 1
        if rollouts < st.limit - cfg.increase or st.limit >= cfg.ceiling:
            return HOLD  # the limit does not bind (or is at the ceiling): nothing to learn
        target = self._grown(st, obs)
        mark = st.congested_at
        if mark is not None and target >= mark:
            if st.limit >= mark:  # at the mark: clean long enough, it fits now (conditions changed)
                if st.clean_streak >= st.probe_polls:
                    st.congested_at, st.probe_polls = None, self._base_probe
                else:
                    target = st.limit
            else:  # below it: up to one below, the mark itself after a long clean streak
                target = mark if st.clean_streak >= st.probe_polls else mark - 1
                if target == mark:
                    st.clean_streak = 0
        if target <= st.limit:
            return HOLD
        st.increases += 1
        self._set(st, target)
        return GROW

    def _grown(self, st: ServerAdmission, obs: Observation) -> int:
        cfg = self.settings
        if not st.slow_start:
            return st.limit + cfg.increase
        target = st.limit * 2
        if obs.kv_usage > 0 and obs.running:
            room = int(obs.running * (cfg.target_kv - obs.kv_usage) / obs.kv_usage)
            target = min(target, st.limit + max(cfg.increase, room))
        return max(target, st.limit + cfg.increase)

    @staticmethod
    def _new_preemptions(st: ServerAdmission, counter: float | None) -> bool:
        if counter is None:
            return False
        last, st.last_preemptions = st.last_preemptions, counter
        return last is not None and counter > last  # a lower reading: the server restarted

    def _congested(self, st: ServerAdmission, rollouts: int) -> str:
        cfg = self.settings
        st.waiting_streak = 0
        st.clean_streak = 0
        st.slow_start = False
        if st.hold > 0 or rollouts > st.limit:  # the same episode: the last decrease is still draining
            st.hold = max(0, st.hold - 1)
            return HOLD
        if st.congested_at is not None and st.limit == st.congested_at:  # the probe of the mark failed
            st.probe_polls = min(MAX_PROBE_POLLS, 2 * st.probe_polls)
            smaller = st.limit - 1
        else:
            st.probe_polls = self._base_probe
            smaller = min(st.limit - 1, math.floor(st.limit * cfg.decrease))
        st.congested_at = st.limit
        st.hold = cfg.cooldown_polls
        if max(cfg.min, smaller) >= st.limit:
            return HOLD
        st.decreases += 1
        self._set(st, smaller)
        return SHRINK

    def _set(self, st: ServerAdmission, limit: int) -> None:
        cfg = self.settings
        st.limit = max(cfg.min, min(cfg.ceiling, limit))
        st.lowest = min(st.lowest, st.limit)
        st.highest = max(st.highest, st.limit)

    def stats(self, index: int) -> dict[str, object]:
        st = self.state[index]
        return {"admit_limit": st.limit, "measured": st.measured, "increases": st.increases,
                "decreases": st.decreases, "lowest": st.lowest, "highest": st.highest}
