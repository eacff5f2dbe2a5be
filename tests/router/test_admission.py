"""AdmissionController (pure): cold start, slow start, additive growth, multiplicative shrink,
cooldown, hysteresis, floor / ceiling, unmeasured servers; table-driven."""

from __future__ import annotations

import pytest

from gym_rollouts.router.admission import (
    FIXED, GROW, HOLD, SHRINK, UNCHANGED, AdmissionController, AdmissionSettings, Observation,
)


def obs(kv: float = 0.1, waiting: float = 0.0, preempt: float | None = 0.0, running: float | None = None) -> Observation:
    return Observation(kv_usage=kv, waiting=waiting, preemptions=preempt, running=running)


def run(settings: AdmissionSettings, steps: list[tuple[Observation | None, int | None]]) -> list[int]:
    """Feed (observation, our rollouts there: None = at the limit) and return the limits."""
    c = AdmissionController(settings, 1)
    out = []
    for o, rollouts in steps:
        c.observe(0, o, rollouts=c.limit(0) if rollouts is None else rollouts)
        out.append(c.limit(0))
    return out


AIMD = AdmissionSettings(initial=4, min=1, max=64, increase=1, decrease=0.5, waiting_polls=2, cooldown_polls=2)


@pytest.mark.parametrize("settings, start", [
    (AdmissionSettings(initial=4), 4),
    (AdmissionSettings(initial=4, cap=2), 2),      # the per-server cap bounds the cold start
    (AdmissionSettings(initial=8, max=6), 6),
])
def test_cold_start(settings, start) -> None:
    assert AdmissionController(settings, 3).limit(2) == start


@pytest.mark.parametrize("name, steps, limits", [
    ("slow start doubles while there is room",
     [(obs(0.1), None)] * 3, [8, 16, 32]),
    ("slow start bounded by the KV room seen: 8 running at 0.4 -> 10 more fit below 0.9",
     [(obs(0.4, running=8), None)], [8]),
    ("projection never below one step",
     [(obs(0.89, running=8), None)], [5]),
    ("an unused limit does not grow",
     [(obs(0.1), 1)] * 3, [4, 4, 4]),
    ("within `increase` of the limit counts as binding",
     [(obs(0.1), 3)], [8]),
    ("kv at or above the target holds (hysteresis band)",
     [(obs(0.9), None), (obs(0.95), None)], [4, 4]),
    ("a preemption halves and ends slow start",
     [(obs(0.1), None), (obs(0.1, preempt=1), None)], [8, 4]),
    ("one waiting poll is tolerated, two shrink",
     [(obs(0.5, waiting=3), None), (obs(0.5, waiting=3), None)], [4, 2]),
    ("waiting resets when it clears",
     [(obs(0.5, waiting=3), 4), (obs(0.99), 4), (obs(0.5, waiting=3), 4)], [4, 4, 4]),
    ("the floor holds",
     [(obs(0.1, preempt=p), None) for p in range(1, 12)], [8, 4, 4, 4, 2, 2, 2, 1, 1, 1, 1]),
])
def test_aimd_table(name, steps, limits) -> None:
    settings = AIMD if "floor" not in name else AdmissionSettings(initial=4, decrease=0.5, cooldown_polls=2)
    assert run(settings, steps) == limits, name


def test_additive_growth_after_congestion_then_cooldown() -> None:
    steps = [(obs(0.1), None), (obs(0.1), None),     # 8, 16
             (obs(0.1, preempt=1), None),              # 8, cooldown 2
             (obs(0.1, preempt=1), None), (obs(0.1, preempt=1), None),  # held
             (obs(0.1, preempt=1), None), (obs(0.1, preempt=1), None)]  # +1 per poll (below the mark 16)
    assert run(AIMD, steps) == [8, 16, 8, 8, 8, 9, 10]


def test_one_episode_one_decrease_while_live_rollouts_exceed_the_limit() -> None:
    c = AdmissionController(AdmissionSettings(initial=16, decrease=0.5, cooldown_polls=0), 1)
    assert c.observe(0, obs(kv=0.95, preempt=0), rollouts=16) == HOLD  # first reading of the counter
    assert c.observe(0, obs(preempt=2), rollouts=16) == SHRINK
    assert c.limit(0) == 8
    assert c.observe(0, obs(preempt=5), rollouts=12) == HOLD  # 12 live > 8: still draining
    assert c.limit(0) == 8
    assert c.observe(0, obs(preempt=6), rollouts=8) == SHRINK  # drained to the limit and still preempting
    assert c.limit(0) == 4


def test_growth_back_to_the_mark_waits_for_a_long_clean_streak() -> None:
    s = AdmissionSettings(initial=10, decrease=0.8, cooldown_polls=1, max=64)
    c = AdmissionController(s, 1)
    c.observe(0, obs(kv=0.95, preempt=0), rollouts=10)
    c.observe(0, obs(preempt=1), rollouts=10)  # 10 -> 8, mark 10
    limits = []
    for _ in range(9):
        c.observe(0, obs(), rollouts=c.limit(0))
        limits.append(c.limit(0))
    # cooldown 1; 8 -> 9 = one below the mark, held there; after 4 clean polls it probes the
    # mark; clean at the mark for 4 more, the mark is dropped and growth resumes
    assert limits == [8, 9, 9, 9, 10, 10, 10, 10, 11]


def test_failed_probe_of_the_mark_steps_back_by_one_and_doubles_the_wait() -> None:
    c = AdmissionController(AdmissionSettings(initial=10, decrease=0.5, cooldown_polls=1), 1)
    preempt = 0
    c.observe(0, obs(kv=0.95, preempt=preempt), rollouts=10)
    preempt += 1
    c.observe(0, obs(preempt=preempt), rollouts=10)  # 10 -> 5, mark 10
    seen = []
    for _ in range(40):
        live = c.limit(0)
        if live >= 10:  # the server fits 9
            preempt += 1
        c.observe(0, obs(preempt=preempt), rollouts=live)
        seen.append(c.limit(0))
    first_probe = seen.index(10)
    assert seen[first_probe + 1] == 9  # back by one, not halved
    second_probe = seen.index(10, first_probe + 1)
    assert second_probe - first_probe > 8  # the wait doubled (4 -> 8 clean polls)
    assert min(seen[first_probe:]) == 9


@pytest.mark.parametrize("cap, fixed", [(None, 64), (6, 6)])
def test_server_without_load_metrics_keeps_a_fixed_limit(cap, fixed) -> None:
    c = AdmissionController(AdmissionSettings(cap=cap), 1)
    assert c.observe(0, None, rollouts=0, answered=True) == FIXED
    assert c.limit(0) == fixed
    assert c.observe(0, None, rollouts=0, answered=True) == UNCHANGED
    assert c.observe(0, obs(), rollouts=0) == HOLD  # metrics appeared: back to the cold start
    assert c.limit(0) == min(4, fixed) and c.stats(0)["measured"] is True


def test_failed_poll_leaves_the_limit() -> None:
    c = AdmissionController(AdmissionSettings(), 1)
    c.observe(0, obs(waiting=1), rollouts=4)
    assert c.observe(0, None, rollouts=4, answered=False) == UNCHANGED
    assert c.limit(0) == 4
    assert c.observe(0, obs(waiting=1), rollouts=4) == HOLD  # the waiting streak restarted


def test_counter_reset_is_not_a_preemption() -> None:
    c = AdmissionController(AdmissionSettings(initial=4), 1)
    c.observe(0, obs(kv=0.95, preempt=50), rollouts=4)
    assert c.observe(0, obs(kv=0.95, preempt=0), rollouts=4) == HOLD  # server restarted: counter fell
    assert c.observe(0, obs(kv=0.95, preempt=None), rollouts=4) == HOLD  # not reported
    assert c.limit(0) == 4


def test_ceiling_and_cap() -> None:
    assert run(AdmissionSettings(initial=4, max=64, cap=10), [(obs(), None)] * 4) == [8, 10, 10, 10]
    assert run(AdmissionSettings(initial=4, max=6), [(obs(), None)] * 2) == [6, 6]


def test_grow_event_and_stats() -> None:
    c = AdmissionController(AdmissionSettings(initial=2), 2)
    assert c.observe(1, obs(), rollouts=2) == GROW
    st = c.stats(1)
    assert st["admit_limit"] == 4 and st["increases"] == 1 and st["highest"] == 4 and st["lowest"] == 2
    assert c.limit(0) == 2
