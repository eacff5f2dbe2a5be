"""AdmissionGate: admits while live < sum of admit_limit over up members, FIFO wake-ups on release
and on limit changes, cancellation; admission_gate() wiring; the /metrics parse of preemptions;
the config knobs; the progress display of live/limit."""

from __future__ import annotations

import asyncio
import math

import pytest

from gym_rollouts.cli.progress import fleet_field, server_lines
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.admission_gate import AdmissionGate, admission_gate, auto_workers
from gym_rollouts.engine.session import concurrency_of
from gym_rollouts.errors import ConfigError
from gym_rollouts.router.admission import AdmissionController, AdmissionSettings
from gym_rollouts.router.policy import ServerState
from gym_rollouts.router.vllm_metrics import ServerLoad, parse_load


def servers(*limits: float) -> list[ServerState]:
    out = []
    for i, limit in enumerate(limits):
        s = ServerState(url=f"http://s{i}/v1")
        s.admit_limit = limit  # type: ignore[attr-defined]
        out.append(s)
    return out


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_gate_admits_up_to_the_sum_of_limits_of_up_members() -> None:
    async def main() -> None:
        fleet = servers(2, 1, 5)
        fleet[2].up = False  # a down server's room does not count
        gate = AdmissionGate(fleet)
        for _ in range(3):
            await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await _settle()
        assert not waiter.done() and gate.live == 3
        gate.release()
        await _settle()
        assert waiter.done() and gate.live == 3 and gate.waited == 1
        fleet[2].up = True
        gate.wake()  # the prober's next poll calls it: room appears
        more = [asyncio.ensure_future(gate.acquire()) for _ in range(6)]
        await _settle()
        assert sum(t.done() for t in more) == 5 and gate.live == 8 and gate.peak == 8
        for t in more:
            t.cancel()
        await _settle()
        assert gate.live == 8 and not gate._waiters

    asyncio.run(main())


def test_gate_wakes_waiters_in_order_and_hands_on_a_cancelled_admission() -> None:
    async def main() -> None:
        gate = AdmissionGate(servers(1))
        await gate.acquire()
        order: list[int] = []

        async def take(i: int) -> None:
            await gate.acquire()
            order.append(i)

        tasks = [asyncio.ensure_future(take(i)) for i in range(3)]
        await _settle()
        gate.release()
        tasks[0].cancel()  # admitted and cancelled before it ran: its room goes to the next
        await _settle()
        assert order == [1] and gate.live == 1
        gate.release()
        await _settle()
        assert order == [1, 2]
        gate.release()
        assert gate.live == 0

    asyncio.run(main())


def test_gate_follows_the_controller_on_each_poll() -> None:
    async def main() -> None:
        fleet = servers(math.inf, math.inf)
        controller = AdmissionController(AdmissionSettings(initial=1, max=8), 2)
        for i, s in enumerate(fleet):
            s.admit_limit = controller.limit(i)  # type: ignore[attr-defined]
        gate = AdmissionGate(fleet, controller)
        await gate.acquire()
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await _settle()
        assert not waiter.done()
        fleet[0].rollouts = 1  # type: ignore[attr-defined]
        gate.observe(0, ServerLoad(waiting=0, kv_usage=0.1, preemptions=0, running=1), True)  # 1 -> 2
        await _settle()
        assert waiter.done() and fleet[0].admit_limit == 2  # type: ignore[attr-defined]
        gate.observe(1, None, True)  # no vLLM metrics there: the fixed ceiling
        assert fleet[1].admit_limit == 8 and gate.capacity() == 10  # type: ignore[attr-defined]
        stats = gate.stats()
        assert stats["live"] == 3 and stats["servers"][1]["measured"] is False

    asyncio.run(main())


class _Dispatcher:
    def __init__(self, n: int) -> None:
        self.servers = [ServerState(url=f"http://s{i}/v1") for i in range(n)]
        self.prober = _Prober()


class _Prober:
    def __init__(self) -> None:
        self.load_observers: list = []


def cfg(*overrides: str):
    raw: dict = {"policy_base_url": ["http://a:1/v1", "http://b:1/v1"]}
    for item in overrides:
        key, value = item.split("=", 1)
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = None if value == "null" else (int(value) if value.isdigit() else value)
    return build_collect_config(raw)


def test_admission_gate_wiring() -> None:
    assert admission_gate(cfg("num_samples_in_parallel=8"), _Dispatcher(2)) is None  # today's path: no gate
    d = _Dispatcher(2)
    gate = admission_gate(cfg("num_samples_in_parallel=8", "router.max_rollouts_per_server=3"), d)
    assert gate is not None and gate.controller is None and gate.capacity() == 6 and not d.prober.load_observers
    d = _Dispatcher(2)
    notices: list[str] = []
    gate = admission_gate(cfg("num_samples_in_parallel=auto"), d, notices.append)
    assert gate is not None and gate.capacity() == 8 and d.prober.load_observers == [gate.observe]
    assert "router.use_metrics is on" in notices[0]


@pytest.mark.parametrize("overrides, workers", [
    (("num_samples_in_parallel=auto",), 128),                 # 64 x 2 servers
    (("num_samples_in_parallel=auto", "router.admission.max=10"), 20),
    (("num_samples_in_parallel=auto", "router.max_rollouts_per_server=5"), 10),
    (("num_samples_in_parallel=12",), 12),
    (("num_samples_in_parallel=null",), 500),
])
def test_workers(overrides, workers) -> None:
    assert concurrency_of(cfg(*overrides), 500) == workers
    if "auto" in overrides[0]:
        assert auto_workers(cfg(*overrides), 7) == 7  # never more than the rollouts


def test_auto_turns_metrics_polling_on() -> None:
    assert cfg("num_samples_in_parallel=auto").router.use_metrics is True
    assert cfg("num_samples_in_parallel=4").router.use_metrics is False


@pytest.mark.parametrize("overrides, message", [
    (("num_samples_in_parallel=fast",), "integer >= 1, null (no limit) or auto"),
    (("num_samples_in_parallel=0",), "must be >= 1"),
    (("router.max_rollouts_per_server=0",), "router.max_rollouts_per_server must be >= 1"),
    (("router.admission.initial=100",), "min <= initial <= max"),
    (("router.admission.decrease=1",), "router.admission.decrease must be in (0, 1)"),
    (("router.admission.target_kv=0",), "router.admission.target_kv must be in (0, 1]"),
    (("router.admission.waiting_polls=0",), "waiting_polls must be >= 1"),
    (("router.admission.bogus=1",), "Unknown config key 'router.admission.bogus'"),
])
def test_knob_validation(overrides, message) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        cfg(*overrides)
    assert message in str(info.value)


def test_preemptions_parsed_from_metrics() -> None:
    page = ("# TYPE vllm:num_preemptions counter\n"
            'vllm:num_preemptions_total{engine="0"} 3.0\nvllm:num_preemptions_total{engine="1"} 2.0\n'
            'vllm:num_requests_running{engine="0"} 7\nvllm:num_requests_waiting 1\n'
            'vllm:kv_cache_usage_perc{engine="0"} 0.5\n')
    load = parse_load(page)
    assert load == ServerLoad(waiting=1.0, kv_usage=0.5, preemptions=5.0, running=7.0)
    assert parse_load("vllm:kv_cache_usage_perc 0.2\n").preemptions is None


def test_progress_shows_live_over_limit() -> None:
    rows = [{"server": "http://a:1/v1", "up": True, "in_flight": 3, "rollouts": 5, "admit_limit": 8},
            {"server": "http://b:1/v1", "up": True, "in_flight": 0, "rollouts": 0, "admit_limit": None}]
    assert fleet_field(rows) == "2/2 up, in-flight 3/0, rollouts 5/8 -"
    assert "rollouts 5/8, in-flight 3" in server_lines(rows)[0]
    assert "rollouts" not in server_lines(rows)[1]
    rows[0]["admit_limit"] = None
    assert fleet_field(rows) == "2/2 up, in-flight 3/0"  # no admission: as before


def test_capacity_with_no_server_up_is_one_per_member() -> None:
    fleet = servers(8, 8, 8)
    for s in fleet:
        s.up = False
    fleet[2].member = False  # absent: not counted
    assert AdmissionGate(fleet).capacity() == 2  # rollouts go out and fail over as without a gate
    fleet[0].up = True
    assert AdmissionGate(fleet).capacity() == 8


@pytest.mark.parametrize("spelling", ["num_samples_in_parallel=auto", "+num_samples_in_parallel=auto",
                                      "++num_samples_in_parallel=auto"])
def test_auto_in_every_spelling(spelling) -> None:
    from gym_rollouts.config.compose import compose_plain, conf_dir
    from gym_rollouts.config.overrides import config_group_names, normalize_overrides

    built = build_collect_config(compose_plain(normalize_overrides(
        [spelling, "+router.max_rollouts_per_server=6", "router.admission.max=8"], config_group_names(conf_dir()))))
    assert built.num_samples_in_parallel == "auto" and built.router.use_metrics
    assert built.router.max_rollouts_per_server == 6 and built.router.admission.max == 8
