"""Pure parts of pausing: the straddle verdict (keep / drop / redo), the provenance entries, the
gate's own rules (modes, labels, async resume with fleet options), and the config knobs."""

from __future__ import annotations

import asyncio

import pytest

from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.weight_versions import DROP, KEEP, REDO, provenance, straddles, verdict
from gym_rollouts.errors import ConfigError
from gym_rollouts.router.pause import PauseControl


@pytest.mark.parametrize("versions, expected", [
    ([], False),
    (["v1"], False),
    (["v1", "v1", "v1"], False),
    ([None, None], False),
    (["v1", "v2"], True),
    ([None, "v1"], True),  # a label set mid-rollout is a change
    (["v2", "v1", "v2"], True),
])
def test_straddles(versions, expected) -> None:
    assert straddles(versions) is expected


@pytest.mark.parametrize("policy, straddled, redos, max_redos, expected", [
    ("keep", False, 0, 2, KEEP),
    ("keep", True, 0, 2, KEEP),
    ("drop", False, 0, 2, KEEP),
    ("drop", True, 0, 2, DROP),
    ("redo", False, 0, 2, KEEP),
    ("redo", True, 0, 2, REDO),
    ("redo", True, 1, 2, REDO),
    ("redo", True, 2, 2, KEEP),  # redos used up: kept, flagged
    ("redo", True, 0, 0, KEEP),
])
def test_verdict(policy, straddled, redos, max_redos, expected) -> None:
    assert verdict(policy, straddled, redos, max_redos) == expected


def test_verdict_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="keep, drop or redo"):
        verdict("sometimes", True, 0, 2)


def test_provenance_lists_every_call() -> None:
    assert provenance(["http://a/v1", "http://b/v1"], ["v1", "v2"]) == {
        "calls": [{"server": "http://a/v1", "weight_version": "v1"}, {"server": "http://b/v1", "weight_version": "v2"}],
        "weight_versions_straddled": True}
    assert provenance([], []) == {"calls": [], "weight_versions_straddled": False}


def test_weights_config_defaults_and_checks() -> None:
    w = build_collect_config({}).weights
    assert (w.on_version_change, w.max_redos, w.server_pause, w.version, w.read_server_version) == \
        ("keep", 2, False, None, False)
    assert build_collect_config({"weights": {"version": 7}}).weights.version == "7"
    with pytest.raises(ConfigError, match="weights.on_version_change must be one of keep, drop, redo"):
        build_collect_config({"weights": {"on_version_change": "always"}})
    with pytest.raises(ConfigError, match="weights.max_redos must be >= 0"):
        build_collect_config({"weights": {"max_redos": -1}})
    with pytest.raises(ConfigError, match="Unknown config key 'weights.server_paused'"):
        build_collect_config({"weights": {"server_paused": True}})


class _Server:
    def __init__(self) -> None:
        self.in_flight = 0


class _Router:
    """Stands in for the dispatcher's side of the contract: servers with in-flight counts."""

    def __init__(self, n: int) -> None:
        self.servers = [_Server() for _ in range(n)]
        self.abandoned: list[tuple[int, str]] = []

    def abandon(self, index: int, reason: str, *, past: float | None = None) -> int:
        self.abandoned.append((index, reason))
        count, self.servers[index].in_flight = self.servers[index].in_flight, 0
        return count


async def test_gate_wait_mode_returns_when_in_flight_ends_and_resume_sets_the_label() -> None:
    gate, router = PauseControl("v1"), _Router(2)
    gate.attach(router)
    router.servers[1].in_flight = 1
    pausing = asyncio.ensure_future(gate.pause("wait"))
    await asyncio.sleep(0.05)
    assert gate.paused and not pausing.done()  # a call is still in flight
    router.servers[1].in_flight = 0
    await asyncio.wait_for(pausing, 1)
    held = asyncio.ensure_future(gate.wait_open())
    await asyncio.sleep(0.02)
    assert not held.done()
    gate.resume("v2")
    assert await asyncio.wait_for(held, 1) >= 0.0
    assert (gate.paused, gate.version, gate.version_for("http://x/v1")) == (False, "v2", "v2")
    gate.resume()  # not paused, no label: nothing changes
    assert gate.version == "v2"
    assert gate.stats()["pauses"] == 1 and gate.stats()["held_calls"] == 1


async def test_gate_abort_mode_abandons_every_server() -> None:
    gate, router = PauseControl(), _Router(2)
    gate.attach(router)
    router.servers[0].in_flight = 2
    await asyncio.wait_for(gate.pause("abort"), 1)
    assert router.abandoned == [(0, "paused"), (1, "paused")] and gate.aborted_calls == 2
    gate.resume()
    assert gate.version is None and not gate.paused


async def test_gate_refuses_bad_modes_and_sync_resume_with_fleet_options() -> None:
    gate = PauseControl()
    with pytest.raises(ConfigError, match="pause mode must be one of wait, abort"):
        await gate.pause("keep")
    with pytest.raises(ConfigError, match="need the fleet"):
        PauseControl(server_pause=True)
    fleet_backed = PauseControl(fleet=object(), read_server_version=True)
    with pytest.raises(ConfigError, match="resume_async"):
        fleet_backed.resume("v2")
