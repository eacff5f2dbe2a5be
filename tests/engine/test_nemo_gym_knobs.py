"""NeMo Gym's collection knobs end to end (``collect`` as a subprocess against the slow embedded
server): num_samples_in_parallel=null, num_repeats=null and per agent, NEMO_GYM_MAX_ROLLOUT_ATTEMPTS,
disable_aggregation, prompt_config, and indices of rows that share a task index apart, through
an interruption, a resume and a shard merge."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson

from engine_helpers import collect_env, read_rows, wait_for_lines


def _rows(n: int, **extra) -> list[dict]:
    return [{"responses_create_params": {"input": f"What is {i} + {i}?"}, "expected_answer": str(2 * i), **extra}
            for i in range(n)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def _keys(path: Path) -> list[tuple[int, int]]:
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in read_rows(path)]


def test_null_concurrency_and_repeats_mean_what_they_mean_in_nemo_gym(tmp_path: Path, collect) -> None:
    _write(tmp_path / "in.jsonl", _rows(12))
    run = collect("num_samples_in_parallel=null", "num_repeats=null")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(_keys(tmp_path / "out.jsonl")) == [(t, 0) for t in range(12)]
    run_info = orjson.loads((tmp_path / "out_aggregate_metrics.json").read_bytes())[0]["run"]
    assert run_info["rollouts"] == 12


def test_per_agent_repeats_and_the_max_attempts_variable(tmp_path: Path, collect, slow_server) -> None:
    rows = _rows(2, agent_ref={"name": "many"}) + _rows(2, agent_ref={"name": "few"})
    _write(tmp_path / "in.jsonl", rows)
    run = collect("+num_repeats={many: 3, _default: 1}", "+environments.many=exact_match",
                  "+environments.few=exact_match")
    assert run.returncode == 0, run.stdout + run.stderr
    counts: dict[str, int] = {}
    for row in read_rows(tmp_path / "out.jsonl"):
        counts[row["agent_ref"]["name"]] = counts.get(row["agent_ref"]["name"], 0) + 1
    assert counts == {"many": 6, "few": 2}
    missing = collect("+num_repeats={many: 3}", "+environments.many=exact_match", "+environments.few=exact_match",
                      "overwrite=true")
    assert missing.returncode == 2 and "num_repeats has no entry for agent 'few'" in missing.stderr
    env = collect_env()
    env["NEMO_GYM_MAX_ROLLOUT_ATTEMPTS"] = "0"
    bad = subprocess.run([sys.executable, "-m", "gym_rollouts.cli.dump_config"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NEMO_GYM_MAX_ROLLOUT_ATTEMPTS='0' must be a positive integer" in bad.stderr
    env["NEMO_GYM_MAX_ROLLOUT_ATTEMPTS"] = "5"
    good = subprocess.run([sys.executable, "-m", "gym_rollouts.cli.dump_config"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "max_attempts: 5" in good.stdout, good.stdout + good.stderr


def test_disable_aggregation_and_prompt_config(tmp_path: Path, collect) -> None:
    (tmp_path / "prompt.yaml").write_text("system: Be brief.\nuser: 'What is {a} + {b}?'\n")
    _write(tmp_path / "in.jsonl", [{"a": i, "b": i, "expected_answer": str(2 * i)} for i in range(3)])
    run = collect(f"+prompt_config={tmp_path / 'prompt.yaml'}", "+disable_aggregation=true")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert [r["responses_create_params"]["input"][1]["content"] for r in rows] == [
        "What is 0 + 0?", "What is 1 + 1?", "What is 2 + 2?"] and all(r["reward"] == 1.0 for r in rows)
    assert not (tmp_path / "out_aggregate_metrics.json").exists()
    assert "disable_aggregation" in run.stdout


def test_shared_task_indices_apart_survive_interruption_resume_and_merge(tmp_path: Path, start_collect,
                                                                        collect) -> None:
    rows = [dict(r, _ng_task_index=i % 7) for i, r in enumerate(_rows(60))]  # each task index in ~9 places
    _write(tmp_path / "in.jsonl", rows)
    run_args = ("num_repeats=2", "num_samples_in_parallel=4", "resume_from_cache=true")
    proc = start_collect(*run_args)
    wait_for_lines(tmp_path / "out.jsonl", 15, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    done = collect(*run_args)
    assert done.returncode == 0, done.stdout + done.stderr
    keys = _keys(tmp_path / "out.jsonl")
    assert len(keys) == 120 and len(set(keys)) == 120
    sizes = {t: sum(1 for k in keys if k[0] == t) for t in range(7)}
    assert sorted(keys) == sorted((t, r) for t, n in sizes.items() for r in range(n))
    for shard in (0, 1):
        run = collect(*run_args, f"shard_index={shard}", "num_shards=2",
                      f"output_jsonl_fpath={tmp_path / f'shard{shard}' / 'out.jsonl'}")
        assert run.returncode == 0, run.stdout + run.stderr
    merge = subprocess.run([sys.executable, "-m", "gym_rollouts.cli.merge", str(tmp_path / "shard0" / "out.jsonl"),
                            str(tmp_path / "shard1" / "out.jsonl"), "-o", str(tmp_path / "merged.jsonl")],
                           cwd=tmp_path, env=collect_env(), capture_output=True, text=True, timeout=60)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert sorted(_keys(tmp_path / "merged.jsonl")) == sorted(keys)
