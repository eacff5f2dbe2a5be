"""Server selection policy (pure, no I/O; a decision costs a few microseconds).

``sticky_least_loaded`` (the default):
- a rollout's calls go to the server its first call went to (vLLM's prefix cache then reuses
  the conversation so far), while that server accepts traffic and is not overloaded;
- a new rollout goes to the accepting server with the least load, where load is
  ``(in-flight requests + vLLM waiting requests) / weight`` (waiting is 0 unless ``/metrics``
  is polled); servers whose KV cache is at or above ``kv_saturation`` are skipped while
  another one is below it; ties go round-robin from a rotating cursor, so tied servers take
  turns;
- a sticky rollout moves (affinity break) when its server is down, or when its load exceeds
  ``overload_factor`` times the least-loaded server's *and* it has at least
  ``overload_min_gap`` more requests outstanding (the gap keeps small absolute differences,
  e.g. 2 vs 0, from breaking affinity). ``affinity_breaks`` counts every move of a sticky
  rollout to another server, whatever the cause (down, probation, a failure there, overload).

A server *accepts* traffic when it is up, except that a server just back from a failure is on
probation and takes one request at a time until one succeeds. When no server accepts, the
least bad choice is made (a server not yet tried for this call, then any member), so a call is
never refused here: the retry policy decides when to give up. Servers that are not members of
the run (down at start-up and not joined yet, or serving another model) are never chosen.

Group affinity (``group_affinity``; a rollout names its group, e.g. its task, at its first call):
the rollouts of one group (GRPO repeats share a prompt) go to the server the group's first rollout
went to, so the shared prompt is prefilled once there, while that server accepts traffic, has
admission room (``rollouts < admit_limit``) and its load exceeds the least-loaded accepting
server's by at most ``group_max_imbalance`` (in load units: requests on a weight-1 server).
Otherwise the rollout goes to the least-loaded server and the group follows it from then on
(``group_breaks``; ``group_hits`` counts rollouts placed with their group). A group is remembered
while any of its rollouts is live, and afterwards among the ``RECENT_GROUPS`` most recently
finished ones (the server's prefix cache outlives the rollouts: with few workers a group's repeats
run one after another); memory is O(live groups + RECENT_GROUPS).

A server of unknown speed gets no such slack (``cautious_untried``, set when the weights are learned:
router/capacity.py): while a server has not answered a call of the run, its weight is a placeholder,
so "within the bound" says nothing of how long its queue will take. Once another candidate has
answered, a group keeps growing there only while its load is at most the least load among the
servers that have answered; before any server has answered, all are equally unknown and the bound
alone applies. Measured
(``scripts/bench_groups.py``, groups of 16, one server 4x slower): without it the slow server took a
whole group of 16 before its first answer, ran half of it queued, and the latency it then reported
(queueing included) kept its learned weight low for the rest of the run.

The run's tail (``unstarted``: a callable the engine sets for each run, ``collect`` and the Python
API alike, giving the rollouts of the run not started yet; None, e.g. a ``Dispatcher`` used on its
own: unknown, these rules are off). Near the end no later placement can even out an imbalance, so
two rules apply to new rollouts:
- the group bound shrinks to ``min(group_max_imbalance, unstarted / (candidates - 1))``: a group may
  outgrow the least-loaded server only by what the rollouts still to come can fill up on the
  others (with none left, every new rollout goes to the least-loaded server);
- with ``latency`` (the per-call latency estimates, router/capacity.py), a server more than
  ``TAIL_SLOWDOWN`` times slower than the fastest candidate takes no new rollout once its extra
  latency exceeds the expected rest of the run, ``unstarted / sum(rollouts / latency)`` (the
  fleet's rollout completion rate, up to calls per rollout, which cancels): a rollout started there
  would end after the others (``tail_skips`` counts such placements).

Admission (router/admission.py sets ``admit_limit``; the policy keeps ``rollouts``, the live
rollouts whose affinity is the server): a new rollout prefers accepting servers with
``rollouts < admit_limit``; when none has room, the choice is made as if there were no limit.

``hash`` pins ``sha256(key) % N`` (NeMo Gym's behaviour) and ``round_robin`` rotates over the
servers per call; both are baselines for the benchmark.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

POLICIES = ("sticky_least_loaded", "hash", "round_robin")
RECENT_GROUPS = 1024  # finished groups whose server is still remembered (oldest dropped first)
TAIL_SLOWDOWN = 2.0  # the tail guard skips only servers this much slower than the fastest candidate


@dataclass
class ServerState:
    """What the policy knows of one server; the dispatcher and the prober keep it current."""

    url: str
    weight: float = 1.0
    up: bool = True
    member: bool = True  # False: not (yet) part of the run: never chosen
    probation: bool = False  # back from a failure: one request at a time until one succeeds
    in_flight: int = 0  # our requests sent and not yet answered, failed or cancelled
    waiting: float = 0.0  # vllm:num_requests_waiting (when /metrics is polled)
    kv_usage: float = 0.0  # vllm:kv_cache_usage_perc in [0, 1] (when /metrics is polled)
    preemptions: float = 0.0  # vllm:num_preemptions_total, a counter (when /metrics is polled)
    rollouts: int = 0  # live rollouts whose affinity is this server (the policy keeps it)
    admit_limit: float = math.inf  # admission's cap on live rollouts here (router/admission.py)

    def load(self) -> float:
        return (self.in_flight + self.waiting) / self.weight

    def accepts(self) -> bool:
        return self.up and not (self.probation and self.in_flight > 0)


class RoutingPolicy:
    """Chooses a server index per call; remembers each live rollout's server."""

    def __init__(self, servers: list[ServerState], kind: str = "sticky_least_loaded", *,
                 overload_factor: float = 2.0, overload_min_gap: int = 24,
                 kv_saturation: float = 1.0, group_affinity: bool = True,
                 group_max_imbalance: float = 24.0) -> None:
        if kind not in POLICIES:
            raise ValueError(f"unknown routing policy {kind!r}; choose from {', '.join(POLICIES)}")
        if not servers:
            raise ValueError("a routing policy needs at least one server")
        self.servers = servers
        self.kind = kind
        self.overload_factor = overload_factor
        self.overload_min_gap = overload_min_gap
        self.kv_saturation = kv_saturation
        self.group_affinity = group_affinity
        self.group_max_imbalance = group_max_imbalance
        self.affinity_breaks = 0
        self.group_hits = 0  # new rollouts placed on their group's server
        self.group_breaks = 0  # new rollouts of a known group placed elsewhere (the group follows)
        self._affinity: dict[str, int] = {}
        self._group_of: dict[str, str] = {}  # live rollout key -> its group
        self._groups: dict[str, list[int]] = {}  # live group -> [server index, live rollouts]
        self._recent: dict[str, int] = {}  # finished group -> its server, oldest first (RECENT_GROUPS)
        self._cursor = 0
        self.unstarted: Callable[[], int | None] | None = None  # the engine's count (the run's tail)
        self.latency: Sequence[float | None] | None = None  # per-server call latency estimates (s)
        self.tail_skips = 0  # new rollouts kept off a slow server near the end of the run
        self.cautious_untried = False  # no group slack on a server not answered yet (module doc)

    @property
    def live_rollouts(self) -> int:
        """Rollouts with a remembered server (memory is O(live rollouts))."""
        return len(self._affinity)

    def server_of(self, key: str) -> int | None:
        return self._affinity.get(key)

    @property
    def live_groups(self) -> int:
        return len(self._groups)

    def forget(self, key: str) -> None:
        """Drop a finished rollout's affinity (and its group's, with its group's last rollout)."""
        index = self._affinity.pop(key, None)
        if index is not None:
            self.servers[index].rollouts -= 1
        group = self._group_of.pop(key, None)
        if group is not None:
            entry = self._groups.get(group)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._groups[group]
                    recent = self._recent
                    recent[group] = entry[0]
                    if len(recent) > RECENT_GROUPS:
                        del recent[next(iter(recent))]

    def choose(self, key: str, exclude: frozenset[int] = frozenset(), group: str | None = None) -> int:
        """Index of the server for the next call of rollout ``key``; ``exclude`` holds the
        servers this call already failed on; ``group``: the rollout's group (read at its first call)."""
        sticky = self._affinity.get(key)
        if sticky is not None and self.kind == "sticky_least_loaded":
            s = self.servers[sticky]  # O(1) fast path: below the gap it cannot be overloaded
            if s.accepts() and sticky not in exclude and s.in_flight + s.waiting < self.overload_min_gap:
                return sticky
        candidates = self._candidates(exclude)
        if self.kind == "hash":
            return self._hashed(key, candidates)
        if self.kind == "round_robin":
            return self._take_turn(candidates)
        if sticky is not None and sticky in candidates:
            if not self._overloaded(sticky, self._least_loaded(candidates)):
                return sticky
        servers = self.servers
        if sticky is None:  # a new rollout: servers with admission room first
            candidates = [i for i in candidates if servers[i].rollouts < servers[i].admit_limit] or candidates
        fresh = [i for i in candidates if servers[i].kv_usage < self.kv_saturation] or candidates
        left = self.unstarted() if sticky is None and self.unstarted is not None else None
        if left is not None:
            left = max(0, left)
        if left is not None and self.latency is not None and len(fresh) > 1:
            fresh = self._tail_guard(fresh, left, self.latency)
        best = self._least_loaded(fresh)
        if sticky is None and group is not None and self.group_affinity:
            bound = self.group_max_imbalance
            if left is not None and len(fresh) > 1:
                bound = min(bound, left / (len(fresh) - 1))
            best = self._with_group(key, group, best, fresh, bound)
        if sticky is not None and best != sticky:
            self.affinity_breaks += 1  # any move: down, probation, failed here, overloaded
            servers[sticky].rollouts -= 1
        if best != sticky:
            servers[best].rollouts += 1
        self._cursor = (best + 1) % len(servers)
        self._affinity[key] = best
        entry = self._groups.get(self._group_of.get(key))  # type: ignore[arg-type]
        if entry is not None:
            entry[0] = best  # the group follows its latest placement (a move included)
        return best

    def _with_group(self, key: str, group: str, best: int, fresh: list[int], bound: float) -> int:
        """The server for a new rollout of ``group``: its group's, within the imbalance ``bound``."""
        entry = self._groups.get(group)
        home = entry[0] if entry is not None else self._recent.pop(group, None)
        if home is not None:  # a known group (live, or finished recently)
            s = self.servers[home]
            # a server not answered yet: no slack over the least loaded that has (module doc)
            floor = self._answered_floor(home, fresh) if self.cautious_untried and home != best else None
            if home == best or (home in fresh and s.rollouts < s.admit_limit
                                and s.load() - self.servers[best].load() <= bound
                                and (floor is None or s.load() <= floor)):
                self.group_hits += 1
                best = home
            else:
                self.group_breaks += 1
        if entry is None:
            self._groups[group] = [best, 1]
        else:
            entry[1] += 1
        self._group_of[key] = group
        return best

    def _answered_floor(self, index: int, fresh: list[int]) -> float | None:
        """When server ``index`` has no latency estimate yet: the least load among the candidates
        that have one (None when it has one, or no candidate has)."""
        latency = self.latency
        if latency is None or latency[index] is not None:
            return None
        loads = [self.servers[i].load() for i in fresh if latency[i]]
        return min(loads) if loads else None

    def _tail_guard(self, fresh: list[int], left: int, latency: Sequence[float | None]) -> list[int]:
        """``fresh`` without the servers a new rollout would finish last on (module doc: the tail)."""
        known = [lat for i in fresh if (lat := latency[i])]
        if len(known) < 2:
            return fresh
        fastest = min(known)
        if max(known) <= TAIL_SLOWDOWN * fastest:
            return fresh  # no server is much slower: the common case costs this much
        rate = sum(s.rollouts / lat for s, lat in zip(self.servers, latency) if lat and s.rollouts > 0)
        if rate <= 0:
            return fresh
        horizon = left / rate  # the expected rest of the run, in calls' latencies
        kept = [i for i in fresh if not (lat := latency[i]) or lat <= TAIL_SLOWDOWN * fastest
                or lat - fastest <= horizon]
        if len(kept) < len(fresh):
            self.tail_skips += 1
        return kept

    def _candidates(self, exclude: frozenset[int]) -> list[int]:
        servers = self.servers
        accepting = [i for i, s in enumerate(servers) if s.accepts()]
        if exclude:
            untried = [i for i in accepting if i not in exclude]
            if untried:
                return untried
        if accepting:
            return accepting
        members = [i for i, s in enumerate(servers) if s.member] or list(range(len(servers)))
        untried = [i for i in members if i not in exclude]
        return untried or members

    def _least_loaded(self, candidates: list[int]) -> int:
        """Lowest load; among equals the first at or after the rotating cursor."""
        if len(candidates) == 1:
            return candidates[0]
        n, cursor, servers = len(self.servers), self._cursor, self.servers
        best, best_key = candidates[0], (servers[candidates[0]].load(), (candidates[0] - cursor) % n)
        for i in candidates[1:]:
            key = (servers[i].load(), (i - cursor) % n)
            if key < best_key:
                best, best_key = i, key
        return best

    def _overloaded(self, sticky: int, best: int) -> bool:
        if sticky == best:
            return False
        s, b = self.servers[sticky], self.servers[best]
        gap = (s.in_flight + s.waiting) - (b.in_flight + b.waiting)
        return gap >= self.overload_min_gap and s.load() > self.overload_factor * b.load()

    def _hashed(self, key: str, candidates: list[int]) -> int:
        n = len(self.servers)
        pinned = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n
        if pinned in candidates:
            return pinned
        return min(candidates, key=lambda i: (i - pinned) % n)  # next one after the pinned server

    def _take_turn(self, candidates: list[int]) -> int:
        n = len(self.servers)
        chosen = min(candidates, key=lambda i: (i - self._cursor) % n)
        self._cursor = (chosen + 1) % n
        return chosen
