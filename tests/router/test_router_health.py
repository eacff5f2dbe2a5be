"""HealthTracker: down on request failure or repeated probe failure, up after cooldown, probation."""

from __future__ import annotations

from gym_rollouts.router.health import DOWN, UP, HealthTracker
from gym_rollouts.router.policy import ServerState


def tracker(n: int = 2, **kw) -> tuple[list[ServerState], HealthTracker]:
    servers = [ServerState(url=f"http://s{i}/v1") for i in range(n)]
    return servers, HealthTracker(servers, **kw)


def test_request_failure_marks_down_once_and_cooldown_gates_the_return() -> None:
    servers, h = tracker(cooldown_s=1.0)
    assert h.request_failed(0, now=100.0, reason="refused") == DOWN
    assert h.request_failed(0, now=100.1, reason="refused") is None  # already down: no new trip
    assert not servers[0].up and h.state(0) == "down" and h.downs(0) == 1 and h.reason(0) == "refused"
    assert h.probe_result(0, True, now=100.5) is None  # still cooling down
    assert h.probe_result(0, True, now=101.0) == UP
    assert servers[0].up and servers[0].probation and h.state(0) == "probation"
    h.request_succeeded(0)
    assert h.state(0) == "up"


def test_repeated_trips_double_the_cooldown_until_a_success() -> None:
    servers, h = tracker(cooldown_s=1.0, cooldown_max_s=3.0)
    now = 0.0
    returns = []
    for _ in range(4):
        h.request_failed(0, now, "hang")
        t = now
        while h.probe_result(0, True, t) != UP:
            t += 0.25
        returns.append(t - now)
        now = t
    assert returns == [1.0, 2.0, 3.0, 3.0]  # 1, 2, 4 capped at 3
    h.request_succeeded(0)
    h.request_failed(0, now, "x")
    assert h.probe_result(0, True, now + 1.0) == UP  # the success reset the trips
    assert h.state(0) == "probation"


def test_probe_failures_mark_down_after_the_threshold_and_up_without_probation() -> None:
    servers, h = tracker(probe_failures_to_down=2)
    assert h.probe_result(1, False, 0.0, "HTTP 503") is None
    assert servers[1].up
    assert h.probe_result(1, False, 2.0, "HTTP 503") == DOWN
    assert "HTTP 503" in h.reason(1)
    assert h.probe_result(1, False, 4.0) is None
    assert h.probe_result(1, True, 6.0) == UP
    assert servers[1].up and not servers[1].probation


def test_a_success_between_probe_failures_resets_the_count() -> None:
    servers, h = tracker(probe_failures_to_down=2)
    h.probe_result(0, False, 0.0)
    h.request_succeeded(0)
    h.probe_result(0, False, 1.0)
    assert servers[0].up


def test_without_probes_expired_cooldowns_bring_servers_back_on_probation() -> None:
    servers, h = tracker(n=3, cooldown_s=1.0)
    h.request_failed(0, now=10.0, reason="refused")
    h.request_failed(1, now=10.5, reason="refused")
    assert h.revive_expired(10.9) == []  # both still cooling down
    assert h.revive_expired(11.0) == [0]
    assert servers[0].up and h.state(0) == "probation" and not servers[1].up
    assert h.revive_expired(11.5) == [1]
    assert h.revive_expired(20.0) == []  # nothing down any more
    h.request_failed(0, now=20.0, reason="again")  # a second trip without a success: 2 s
    assert h.revive_expired(21.5) == [] and h.revive_expired(22.0) == [0]


def test_retry_after_holds_a_server_down_past_its_cooldown_whatever_the_probes_say() -> None:
    servers, h = tracker(cooldown_s=1.0)
    assert h.request_failed(0, now=10.0, reason="429", hold_s=5.0) == DOWN
    assert h.probe_result(0, True, now=11.0) is None and h.probe_result(0, True, now=14.9) is None
    assert h.probe_result(0, True, now=15.0) == UP
    h.request_succeeded(0)
    h.request_failed(0, now=20.0, reason="503")
    h.request_failed(0, now=20.1, reason="503", hold_s=3.0)  # already down: the hold still extends it
    assert h.probe_result(0, True, now=22.0) is None and h.probe_result(0, True, now=23.1) == UP


def test_a_stall_is_a_trip() -> None:
    servers, h = tracker(cooldown_s=1.0)
    assert h.stalled(1, now=0.0, reason="stalled") == DOWN
    assert h.state(1) == "down" and h.reason(1) == "stalled"
    assert h.probe_result(1, True, now=1.0) == UP and servers[1].probation  # back on probation


def test_absent_servers_stay_out_until_they_join_or_are_excluded() -> None:
    servers, h = tracker(3, cooldown_s=0.1)
    h.absent(1, "refused")
    h.absent(2, "refused")
    assert h.state(1) == "joining" and not servers[1].up and not servers[1].member
    assert h.probe_result(1, True, now=100.0) is None and h.revive_expired(now=100.0) == []  # no back door
    h.join(1)
    assert h.state(1) == "up" and servers[1].up and servers[1].member and not servers[1].probation
    h.exclude(2, "serves another model")
    assert h.state(2) == "excluded" and not h.joining(2) and h.reason(2) == "serves another model"
    assert h.probe_result(2, True, now=200.0) is None and not servers[2].up


def test_unresponsive_after_the_probe_failures_that_mark_down() -> None:
    servers, h = tracker(probe_failures_to_down=2)
    h.probe_result(0, False, now=0.0)
    assert not h.unresponsive(0)
    h.probe_result(0, False, now=1.0)
    assert h.unresponsive(0)
    h.probe_result(0, True, now=2.0)
    assert not h.unresponsive(0)
