"""Liveness (pure): stall verdicts from answers and progress counters, and the dead-fleet verdict."""

from __future__ import annotations

from gym_rollouts.router.liveness import Liveness


def live(**kw) -> Liveness:
    return Liveness(2, now=0.0, **{"stall_timeout_s": 10.0, "dead_fleet_timeout_s": 30.0, **kw})


def test_still_counters_with_calls_in_flight_is_a_stall() -> None:
    lv = live()
    assert not lv.check_progress(0, 1.0, in_flight=3, counter=100.0)  # a first reading: a baseline
    assert not lv.check_progress(0, 9.0, in_flight=3, counter=100.0)  # 9 s without progress: not yet
    assert lv.check_progress(0, 10.0, in_flight=3, counter=100.0)


def test_moving_counters_or_answers_or_idleness_are_progress() -> None:
    lv = live()
    lv.check_progress(0, 1.0, in_flight=1, counter=5.0)
    assert not lv.check_progress(0, 20.0, in_flight=1, counter=6.0)  # a long generation: counters move
    assert not lv.check_progress(0, 29.0, in_flight=1, counter=6.0)
    assert lv.check_progress(0, 30.0, in_flight=1, counter=6.0)
    lv.reset_progress(0, 30.0)
    lv.answered(0, 35.0)
    assert not lv.check_progress(0, 44.0, in_flight=1, counter=6.0)  # it answered 9 s ago
    assert lv.check_progress(0, 45.0, in_flight=1, counter=6.0)
    assert not lv.check_progress(1, 100.0, in_flight=0, counter=1.0)  # idle is never stalled


def test_no_counter_reading_gives_no_verdict() -> None:
    lv = live()
    for now in (1.0, 50.0, 500.0):
        assert not lv.check_progress(0, now, in_flight=2, counter=None)
    assert not live(stall_timeout_s=0.0).check_progress(0, 500.0, in_flight=2, counter=1.0)  # off


def test_readings_are_wanted_only_for_quiet_servers_with_calls_in_flight() -> None:
    lv = live()
    assert not lv.wants_progress(0, 5.0, in_flight=0, quiet_s=1.0)  # idle (and the clock restarts)
    assert not lv.wants_progress(0, 5.5, in_flight=1, quiet_s=1.0)
    assert lv.wants_progress(0, 6.0, in_flight=1, quiet_s=1.0)
    lv.answered(0, 6.5)
    assert not lv.wants_progress(0, 7.0, in_flight=1, quiet_s=1.0)  # it answers: no polling


def test_the_fleet_is_dead_only_when_nothing_answered_while_it_was_needed() -> None:
    lv = live()
    assert not lv.fleet_dead(100.0, in_flight=0)  # nothing answered, but nothing was asked either
    assert not lv.fleet_dead(101.0, in_flight=1)  # needed from now on: the clock starts here
    assert not lv.fleet_dead(130.0, in_flight=1) and lv.fleet_dead(131.0, in_flight=1)
    lv.answered(1, 140.0)
    assert not lv.fleet_dead(150.0, in_flight=1)
    assert not lv.fleet_dead(160.0, in_flight=0)  # a lull
    lv.failed(0, 180.0, "cannot connect to a: refused")
    assert not lv.fleet_dead(200.0, in_flight=0) and lv.fleet_dead(210.0, in_flight=0)  # 30 s from the failure
    lv.probe(1, True, 211.0)  # a passing health probe is an answer
    assert not lv.fleet_dead(240.0, in_flight=1)
    assert not live(dead_fleet_timeout_s=0.0).fleet_dead(1e6, in_flight=5)  # off


def test_moving_progress_counters_keep_the_fleet_alive() -> None:
    lv = live()
    lv.check_progress(0, 1.0, in_flight=1, counter=1.0)
    assert not lv.fleet_dead(2.0, in_flight=1)
    lv.check_progress(0, 25.0, in_flight=1, counter=2.0)  # a long generation, nothing answered yet
    assert not lv.fleet_dead(40.0, in_flight=1) and lv.fleet_dead(55.0, in_flight=1)


def test_the_fleet_description_names_each_server_and_its_last_error() -> None:
    lv = live()
    lv.answered(0, 10.0)
    lv.failed(0, 20.0, "connection to a lost")
    lv.probe(1, False, 25.0, "HTTP 503")
    text = lv.describe(["http://a/v1", "http://b/v1"], now=70.0)
    assert "http://a/v1 (last answered 60 s ago; last error: connection to a lost)" in text
    assert "http://b/v1 (never answered; last error: health probe: HTTP 503)" in text


def test_a_metrics_page_that_cannot_be_read_shows_no_progress() -> None:
    lv = live()
    assert not lv.check_progress(0, 1.0, in_flight=1, counter=None, reachable=False)
    assert lv.check_progress(0, 10.0, in_flight=1, counter=None, reachable=False)  # a frozen process
    lv.reset_progress(0, 10.0)
    assert not lv.check_progress(0, 15.0, in_flight=1, counter=7.0)  # readable again: a baseline ...
    assert not lv.check_progress(0, 16.0, in_flight=1, counter=8.0)  # ... and it moves
