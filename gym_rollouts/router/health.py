"""Up/down state machine of each server (pure: the caller passes the time).

- A retryable request failure (connect error, disconnect, timeout, 429/5xx) marks an up server
  down at once ("trip"), for a cooldown of ``cooldown_s * 2**(trips-1)`` (capped at
  ``cooldown_max_s``); ``trips`` counts trips since the last success, so a server that keeps
  failing is retried ever more rarely. Failures while already down change nothing.
- ``probe_failures_to_down`` consecutive failed ``/health`` probes mark an up server down.
- A passing probe brings a down server back once its cooldown is over. A server that tripped on
  requests comes back on probation (one request at a time, see policy) until a request succeeds.
  With background probes off, ``revive_expired`` does the same for every server whose cooldown is
  over (the dispatcher calls it before each choice), so a down server is tried again.
- Any successful request (or a 4xx answer, which proves the server is alive) resets the trips
  and ends probation.
- A 429/503 ``Retry-After`` (``hold_s``) keeps the server down at least that long, even past the
  cooldown and whatever the probes say.
- ``stalled``: the server had calls in flight and made no progress (see liveness): a trip, as a
  request failure.
- A server that did not answer at start-up is *joining* (``absent``): down, and out of probes and
  cooldowns until ``join`` (it answered and serves the run's model) or ``exclude`` (it serves
  another model: it stays out).
"""

from __future__ import annotations

from dataclasses import dataclass

from gym_rollouts.router.policy import ServerState

UP, DOWN = "up", "down"
JOINING, EXCLUDED = "joining", "excluded"


@dataclass
class _Health:
    trips: int = 0
    down_until: float = 0.0
    probe_failures: int = 0
    downs: int = 0  # up -> down transitions, for stats
    reason: str = ""
    excluded: bool = False  # answered with another model: never joins


class HealthTracker:
    def __init__(self, servers: list[ServerState], *, cooldown_s: float = 1.0, cooldown_max_s: float = 60.0,
                 probe_failures_to_down: int = 2) -> None:
        self.servers = servers
        self.cooldown_s = cooldown_s
        self.cooldown_max_s = cooldown_max_s
        self.probe_failures_to_down = probe_failures_to_down
        self._h = [_Health() for _ in servers]

    def downs(self, index: int) -> int:
        return self._h[index].downs

    def reason(self, index: int) -> str:
        """Why the server last went down ('' if it never did)."""
        return self._h[index].reason

    def state(self, index: int) -> str:
        s, h = self.servers[index], self._h[index]
        if h.excluded:
            return EXCLUDED
        if not s.member:
            return JOINING
        return DOWN if not s.up else ("probation" if s.probation else UP)

    def is_member(self, index: int) -> bool:
        """Joined the run (answered at start-up or joined later); excluded servers never are."""
        return self.servers[index].member

    def joining(self, index: int) -> bool:
        """Down since start-up, waiting to answer (not excluded)."""
        return not self.servers[index].member and not self._h[index].excluded

    def request_failed(self, index: int, now: float, reason: str, hold_s: float | None = None) -> str | None:
        """A retryable failure of a request sent to ``index``; returns DOWN on a transition.
        ``hold_s`` (the server's Retry-After) keeps it down at least that long."""
        s, h = self.servers[index], self._h[index]
        if not s.up:
            if hold_s is not None:
                h.down_until = max(h.down_until, now + hold_s)
            return None
        h.trips += 1
        cooldown = min(self.cooldown_max_s, self.cooldown_s * 2.0 ** (h.trips - 1))
        return self._down(index, now + max(cooldown, hold_s or 0.0), reason)

    def stalled(self, index: int, now: float, reason: str) -> str | None:
        """The server had calls in flight and made no progress: a trip; DOWN on a transition."""
        return self.request_failed(index, now, reason)

    def absent(self, index: int, reason: str) -> None:
        """Did not answer at start-up: down and joining."""
        s, h = self.servers[index], self._h[index]
        s.up = s.probation = s.member = False
        h.reason = reason

    def join(self, index: int) -> None:
        """A joining server answered and serves the run's model: up from now on."""
        s, h = self.servers[index], self._h[index]
        h.trips, h.probe_failures, h.down_until = 0, 0, 0.0
        s.up, s.probation, s.member = True, False, True

    def exclude(self, index: int, reason: str) -> None:
        """A joining server that cannot serve this run (another model): it stays out."""
        h = self._h[index]
        h.excluded = True
        h.reason = reason
        self.servers[index].member = False

    def unresponsive(self, index: int) -> bool:
        """Its last ``probe_failures_to_down`` health probes (at least) all failed."""
        return self._h[index].probe_failures >= self.probe_failures_to_down

    def request_succeeded(self, index: int) -> None:
        h = self._h[index]
        h.trips = 0
        h.probe_failures = 0
        self.servers[index].probation = False

    def probe_result(self, index: int, ok: bool, now: float, detail: str = "") -> str | None:
        """Apply one ``/health`` probe outcome; returns UP or DOWN on a transition."""
        s, h = self.servers[index], self._h[index]
        if ok:
            h.probe_failures = 0
            return self._back_up(index, now)
        h.probe_failures += 1
        if s.up and h.probe_failures >= self.probe_failures_to_down:
            return self._down(index, now, f"health probe failed {h.probe_failures}x: {detail}")
        return None

    def revive_expired(self, now: float) -> list[int]:
        """Without probes: bring back every down server whose cooldown is over (on probation if
        it tripped on requests); returns the indices that came back."""
        return [i for i, s in enumerate(self.servers) if not s.up and self._back_up(i, now) == UP]

    def _back_up(self, index: int, now: float) -> str | None:
        s, h = self.servers[index], self._h[index]
        if s.up or now < h.down_until or not s.member:
            return None
        s.up = True
        s.probation = h.trips > 0
        return UP

    def _down(self, index: int, until: float, reason: str) -> str:
        s, h = self.servers[index], self._h[index]
        s.up = False
        s.probation = False
        h.down_until = until
        h.downs += 1
        h.reason = reason
        return DOWN
