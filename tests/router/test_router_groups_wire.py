"""Group affinity and learned capacity over real sockets (embedded servers as child processes)."""

from __future__ import annotations

import asyncio
import collections

from router_harness import body, open_dispatcher

from gym_rollouts.adapter.connect import open_policy
from gym_rollouts.config.schema import ModelConfig, RouterConfig
from gym_rollouts.embedded import EmbeddedConfig


async def grouped(dispatcher, groups: int, repeats: int, workers: int) -> dict[int, set[str]]:
    """``groups`` x ``repeats`` one-call rollouts (repeats consecutive); the servers of each group."""
    jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for g in range(groups):
        for r in range(repeats):
            jobs.put_nowait((g, r))
    servers: dict[int, set[str]] = collections.defaultdict(set)

    async def worker() -> None:
        while not jobs.empty():
            g, r = jobs.get_nowait()
            key = f"g{g}-{r}"
            try:
                server, _ = await dispatcher.post("/chat/completions", body(g, 0), key, group=f"g{g}")
                servers[g].add(server)
            finally:
                dispatcher.forget(key)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return servers


async def answer_once_each(dispatcher, n: int) -> None:
    """One ungrouped call at a time to each of the first ``n`` servers (ties rotate): their speed is
    known, so groups get their slack there (router/policy.py)."""
    for i in range(n):
        await dispatcher.post("/chat/completions", body(1000 + i, 0), f"warm{i}")
        dispatcher.forget(f"warm{i}")
    assert all(lat is not None for lat in dispatcher.capacity.latency[:n])


async def test_a_group_lands_on_one_server_and_groups_spread(start_fleet) -> None:
    procs = start_fleet(*(EmbeddedConfig(latency_ms=20.0) for _ in range(3)))
    async with open_dispatcher([p.base_url for p in procs], group_max_imbalance=100.0) as dispatcher:
        await answer_once_each(dispatcher, 3)
        servers = await grouped(dispatcher, groups=6, repeats=8, workers=8)
        summary = dispatcher.summary()
    assert all(len(s) == 1 for s in servers.values()), servers
    assert len(set.union(*servers.values())) >= 2  # groups still spread over the fleet
    assert summary["group_hits"] == 6 * 7 and summary["live_groups"] == 0 and summary["live_rollouts"] == 0


async def burst(dispatcher, group: str, n: int) -> list[str]:
    """``n`` one-call rollouts of ``group`` placed in order, all in flight together."""
    async def one(r: int) -> str:
        try:
            server, _ = await dispatcher.post("/chat/completions", body(r, 0), f"{group}-{r}", group=group)
            return server
        finally:
            dispatcher.forget(f"{group}-{r}")
    return list(await asyncio.gather(*(one(r) for r in range(n))))


async def test_a_group_does_not_pile_onto_a_server_that_has_not_answered(start_fleet) -> None:
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=10.0), EmbeddedConfig(latency_ms=300.0))
    async with open_dispatcher([fast.base_url, slow.base_url]) as dispatcher:
        assert dispatcher.policy.cautious_untried  # learned weights: an unanswered server's is a placeholder
        await answer_once_each(dispatcher, 1)  # the fast server has answered, the slow one not yet
        assert dispatcher.capacity.latency[1] is None
        servers = await burst(dispatcher, "g", 8)  # the group's first rollout lands on the idle slow server
    assert servers[0] == slow.base_url
    assert servers.count(slow.base_url) == 1, servers  # the rest do not queue behind it
    assert dispatcher.policy.group_breaks == 1 and dispatcher.policy.group_hits == 6


async def test_without_caution_a_group_piles_onto_the_unanswered_server(start_fleet) -> None:
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=10.0), EmbeddedConfig(latency_ms=300.0))
    async with open_dispatcher([fast.base_url, slow.base_url]) as dispatcher:
        dispatcher.policy.cautious_untried = False  # the behaviour before (scripts/bench_groups.py row)
        await answer_once_each(dispatcher, 1)
        servers = await burst(dispatcher, "g", 8)
    assert servers == [slow.base_url] * 8  # within group_max_imbalance 24: the whole group waits there


async def test_hand_or_fixed_weights_are_not_placeholders(start_fleet) -> None:
    procs = start_fleet(EmbeddedConfig(latency_ms=10.0), EmbeddedConfig(latency_ms=10.0))
    urls = [p.base_url for p in procs]
    async with open_dispatcher(urls, weights=(1.0, 0.5)) as dispatcher:
        assert not dispatcher.policy.cautious_untried
    async with open_dispatcher(urls, learn_capacity=False) as dispatcher:
        assert not dispatcher.policy.cautious_untried


async def test_without_group_affinity_a_group_spreads(start_fleet) -> None:
    procs = start_fleet(*(EmbeddedConfig(latency_ms=20.0) for _ in range(3)))
    async with open_dispatcher([p.base_url for p in procs], group_affinity=False) as dispatcher:
        servers = await grouped(dispatcher, groups=4, repeats=8, workers=8)
    assert all(len(s) >= 2 for s in servers.values()), servers


async def test_policy_sessions_of_one_group_share_a_server(start_fleet) -> None:
    procs = start_fleet(*(EmbeddedConfig(latency_ms=20.0) for _ in range(3)))
    router = RouterConfig(group_max_imbalance=100.0)
    async with open_policy(ModelConfig(), [p.base_url for p in procs], router=router) as (policy, _):
        sessions = [policy.session(group="task-1") for _ in range(4)]
        await asyncio.gather(*(s.respond({"input": "What is 2 + 3?", "max_output_tokens": 8}) for s in sessions))
        for s in sessions:
            s.close()
        assert len({s.servers[0] for s in sessions}) == 1
        assert policy.dispatcher.policy.group_hits == 3


async def test_a_slower_server_is_learned_from_latencies(start_fleet) -> None:
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=20.0, max_num_seqs=2),
                             EmbeddedConfig(latency_ms=80.0, max_num_seqs=2))
    async with open_dispatcher([fast.base_url, slow.base_url]) as dispatcher:
        await grouped(dispatcher, groups=60, repeats=1, workers=4)
        rows = {row["server"]: row for row in dispatcher.stats()}
        capacity = dispatcher.summary()["capacity"]
    assert capacity["warm"]
    assert rows[fast.base_url]["weight"] == 1.0
    assert rows[slow.base_url]["weight"] < 0.6, capacity
    assert rows[slow.base_url]["completed"] < rows[fast.base_url]["completed"]


async def test_hand_weights_override_learning(start_fleet) -> None:
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=10.0), EmbeddedConfig(latency_ms=40.0))
    async with open_dispatcher([fast.base_url, slow.base_url], weights=(1.0, 1.0)) as dispatcher:
        await grouped(dispatcher, groups=20, repeats=1, workers=4)
        assert [row["weight"] for row in dispatcher.stats()] == [1.0, 1.0]
        capacity = dispatcher.summary()["capacity"]
    # the latencies are still estimated (the tail guard reads them), the weights left as set
    assert capacity["learning"] is False and capacity["weights"] == [1.0, 1.0]
    fast_ms, slow_ms = capacity["latency_ms"]
    assert fast_ms is not None and slow_ms is not None and slow_ms > 2 * fast_ms, capacity


async def test_the_last_rollouts_of_a_run_avoid_a_much_slower_server(start_fleet) -> None:
    fast, slow = start_fleet(EmbeddedConfig(latency_ms=10.0), EmbeddedConfig(latency_ms=60.0))
    placed: list[tuple[int, str]] = []  # (rollouts not started yet, server) per rollout, in start order
    async with open_dispatcher([fast.base_url, slow.base_url], weights=(1.0, 1.0)) as dispatcher:
        jobs: asyncio.Queue[int] = asyncio.Queue()
        for r in range(40):
            jobs.put_nowait(r)
        dispatcher.count_unstarted(jobs.qsize)  # as the engine does

        async def worker() -> None:
            while not jobs.empty():
                r = jobs.get_nowait()
                left = jobs.qsize()
                try:
                    server, _ = await dispatcher.post("/chat/completions", body(r, 0), f"r{r}")
                    placed.append((left, server))
                finally:
                    dispatcher.forget(f"r{r}")

        async with asyncio.TaskGroup() as tg:
            for _ in range(4):
                tg.create_task(worker())
        summary = dispatcher.summary()
    assert any(server == slow.base_url for _, server in placed)  # equal weights: it takes its share
    last = [server for left, server in placed if left <= 1]
    assert last and all(server == fast.base_url for server in last), placed
    assert summary["tail_skips"] >= 2
