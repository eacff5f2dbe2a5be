"""Shard selection: disjoint, covering, balanced, validated (pure)."""

import pytest

from gym_rollouts.sweep.shard import Shard, shard_of, shard_problems


@pytest.mark.parametrize("num_tasks", [0, 1, 3, 4, 5, 17, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_every_task(num_tasks, count):
    owners = {t: [i for i in range(count) if Shard(i, count).owns(t)] for t in range(num_tasks)}
    assert all(len(o) == 1 for o in owners.values())
    for i in range(count):
        owned = [t for t in range(num_tasks) if Shard(i, count).owns(t)]
        assert Shard(i, count).size(num_tasks) == len(owned)
        assert len(owned) in (num_tasks // count, num_tasks // count + 1)  # balanced


def test_round_robin_assignment_is_fixed():
    assert [t for t in range(10) if Shard(1, 4).owns(t)] == [1, 5, 9]


@pytest.mark.parametrize("index,count,message", [
    (0, 0, "num_shards must be >= 1"),
    (-1, 4, "shard_index must be in 0..3"),
    (4, 4, "shard_index must be in 0..3"),
])
def test_bad_settings_are_named(index, count, message):
    problems = shard_problems(index, count)
    assert len(problems) == 1 and message in problems[0]
    with pytest.raises(ValueError, match=message.split(" ")[0]):
        Shard(index, count)


def test_good_settings_and_shard_of_config():
    assert shard_problems(3, 4) == []
    cfg = type("Cfg", (), {"shard_index": 2, "num_shards": 3})()
    assert shard_of(cfg) == Shard(2, 3) and not shard_of(cfg).is_whole
    assert shard_of(object()).is_whole


def test_schema_rejects_a_bad_shard_before_anything_runs():
    from gym_rollouts.config.schema import build_collect_config
    from gym_rollouts.errors import ConfigError

    assert build_collect_config({"shard_index": 1, "num_shards": 2}).num_shards == 2
    with pytest.raises(ConfigError, match="shard_index must be in 0..1"):
        build_collect_config({"shard_index": 2, "num_shards": 2})
