"""The Python API with an output file (the same files as ``collect``, resume included) and its
errors: our exception types, bad rows named by position before any request, misuse refused."""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson
import pytest

from api_helpers import model_calls, task_rows
from gym_rollouts import Collector, collect, load_config
from gym_rollouts.errors import ConfigError, InputError
from gym_rollouts.records import EXTRAS


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_output_files_as_the_cli_writes_them(embedded_server, config_for, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with Collector(config_for(embedded_server)) as c:
        streamed = [row async for row in c.run(task_rows(4), output=out, num_repeats=2)]
        for row in streamed:
            row["advantage"] = 0.5  # the caller's copy: the file keeps the row as written
    assert sorted(r[EXTRAS]["seq"] for r in _lines(out)) == list(range(8))
    assert sorted(orjson.dumps({k: v for k, v in r.items() if k != "advantage"}, option=orjson.OPT_SORT_KEYS)
                  for r in streamed) == sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in _lines(out))
    for side in ("out_materialized_inputs.jsonl", "out_aggregate_metrics.json", "out_run.json"):
        assert (tmp_path / side).is_file(), side
    assert c.last_run.metrics_written and c.last_run.paths.rows == out


async def test_resume_through_the_api_runs_only_what_is_missing(slow_server, config_for, tmp_path: Path) -> None:
    out, rows = tmp_path / "out.jsonl", task_rows(12)
    async with Collector(config_for(slow_server, "num_samples_in_parallel=2")) as c:
        async with contextlib.aclosing(c.run(rows, output=out)) as first:
            got = [await anext(first) for _ in range(3)]
        assert c.last_run.interrupted
        with pytest.raises(ConfigError, match="exists|resume"):  # a fresh run refuses the earlier output
            [r async for r in c.run(rows, output=out)]
        rest = [row async for row in c.run(rows, output=out, resume=True)]
    on_file = _lines(out)
    seqs = [r[EXTRAS]["seq"] for r in on_file]
    assert sorted(seqs) == list(range(12)), "a rollout lost or written twice"
    assert len(got) + len(rest) <= 12 + 2  # at most the in-flight ones of the stop were cut and redone
    taken, resumed = {r[EXTRAS]["seq"] for r in got}, {r[EXTRAS]["seq"] for r in rest}
    assert not taken & resumed  # resume yields only what the earlier run did not write
    # rows written but not yet taken when the caller stopped are on file only: read them there
    assert taken | resumed <= set(seqs) and len(resumed) == 12 - (len(on_file) - len(rest))
    assert c.last_run.summary["resumed_rows"] == len(on_file) - len(rest)


async def test_resume_with_other_rows_is_refused(embedded_server, config_for, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with Collector(config_for(embedded_server)) as c:
        [r async for r in c.run(task_rows(3), output=out)]
        with pytest.raises(ConfigError, match="input rows changed"):
            [r async for r in c.run(task_rows(4), output=out, resume=True)]


async def test_a_bad_row_is_named_by_position_before_any_request(embedded_server, config_for) -> None:
    rows = task_rows(4)
    rows[2] = {"prompt": "no responses_create_params"}
    async with Collector(config_for(embedded_server)) as c:
        before = model_calls(embedded_server)
        with pytest.raises(InputError) as caught:
            [r async for r in c.run(rows)]
        assert model_calls(embedded_server) == before
        assert "row 3: missing 'responses_create_params'" in str(caught.value)
        assert "rows.jsonl" not in str(caught.value) and caught.value.problems == [
            "row 3: missing 'responses_create_params'"]
        with pytest.raises(InputError, match="row 2 of the rows given to run.. cannot be written as JSON"):
            [r async for r in c.run([task_rows(1)[0], {"responses_create_params": {"input": object()}}])]
        with pytest.raises(InputError, match="held no row"):
            [r async for r in c.run([])]
        assert len([r async for r in c.run(task_rows(1))]) == 1  # the collector is still usable


async def test_skipped_bad_rows_are_in_the_failure_rows(embedded_server, config_for, tmp_path: Path) -> None:
    rows = task_rows(3)
    rows[1] = {"responses_create_params": {"input": 7}}
    async with Collector(config_for(embedded_server, "on_bad_input=skip")) as c:
        for output in (None, tmp_path / "out.jsonl"):
            assert len([r async for r in c.run(rows, output=output)]) == 2
            assert [f["input_line"] for f in c.last_run.failure_rows] == [2]
            assert c.last_run.summary["skipped_inputs"] == 1
    assert len(_lines(tmp_path / "out_failures.jsonl")) == 1


async def test_misuse_is_refused_with_what_to_do(embedded_server, config_for, tmp_path: Path) -> None:
    cfg = config_for(embedded_server)
    with pytest.raises(ConfigError, match="not open"):
        [r async for r in Collector(cfg).run(task_rows(1))]
    async with Collector(cfg) as c:
        with pytest.raises(ConfigError, match="one row"):
            [r async for r in c.run(task_rows(1)[0])]
        with pytest.raises(ConfigError, match="needs output"):
            [r async for r in c.run(task_rows(1), resume=True)]
        with pytest.raises(ConfigError, match="num_repeats"):
            [r async for r in c.run(task_rows(1), num_repeats=0)]
        with pytest.raises(ConfigError, match="pause mode"):
            await c.pause("sometimes")
        rows = c.run(task_rows(2))
        await anext(rows)
        with pytest.raises(ConfigError, match="still in progress"):
            await anext(c.run(task_rows(1)))
        await rows.aclose()
    with pytest.raises(ConfigError, match="own event loop"):
        collect(cfg, task_rows(1))


def test_load_config_composes_as_the_cli(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("num_samples_in_parallel: 7\nlimit: 3\n")
    cfg = load_config(["model=vllm_for_training", "limit=5"], config_paths=[extra])
    assert cfg.num_samples_in_parallel == 7 and cfg.limit == 5  # the file over conf/, the overrides over it
    assert cfg.model.return_token_id_information
    assert load_config(["+num_repeats=3"]).num_repeats == 3  # NeMo Gym's +key
    with pytest.raises(ConfigError, match="Unknown option 'vlm' for config group 'model'"):
        load_config(["model=vlm"])
    with pytest.raises(ConfigError, match="list of strings"):
        load_config("limit=3")  # type: ignore[arg-type]
