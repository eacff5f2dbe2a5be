"""Real tasks end to end, ``collect`` as a subprocess against the embedded backend: a reasoning-gym
mix generated without an input file (rewards = the library's score of what the model said, the
generated tasks byte-identical in another process, resume refusing another library version), the
math resource on NeMo Gym's own math rows (rewards = math-verify's), and a missing extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import reasoning_gym
from math_verify import parse, verify

from gym_rollouts.embedded import EmbeddedProcess
from gym_rollouts.resource.answers import AnswerExtractor
from gym_rollouts.resource.base import final_text
from gym_rollouts.testing.nemo_gym import site_packages

MIX = "resource.params.datasets={basic_arithmetic: 2, chain_sum: 1, spell_backward: 1}"
NEMO_GYM_MATH_FILES = ("resources_servers/math_with_judge/data/example.jsonl",
                       "resources_servers/polymath/data/example.jsonl")


def collect(tmp_path: Path, *args: str, hash_seed: str = "0", python_prefix: str | None = None
            ) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    env.pop("HYDRA_FULL_ERROR", None)
    start = ["-m", "gym_rollouts.cli.collect"] if python_prefix is None else ["-c", python_prefix]
    return subprocess.run([sys.executable, *start, "progress=off", f"hydra.run.dir={tmp_path}/hydra", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def read_rows(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_reasoning_gym_mix_end_to_end(embedded_server: EmbeddedProcess, tmp_path: Path) -> None:
    out = tmp_path / "run" / "rollouts.jsonl"
    base = [f"policy_base_url={embedded_server.base_url}", "resource=reasoning_gym", MIX,
            "resource.params.size=12", "resource.params.seed=7"]
    first = collect(tmp_path, *base, f"output_jsonl_fpath={out}", hash_seed="1")
    assert first.returncode == 0, first.stderr
    generated = out.with_name("rollouts_generated_inputs.jsonl")
    rows = read_rows(out)
    assert len(rows) == 12 and len(read_rows(generated)) == 12
    rewards = {}
    for row in rows:
        block = row["reasoning_gym"]
        dataset = reasoning_gym.create_dataset(block["dataset"], seed=block["seed"], size=block["size"])
        said = AnswerExtractor("auto").extract(final_text(row["response"]))
        assert row["extracted_answer"] == said
        assert row["reward"] == dataset.score_answer(said, dataset[block["index"]])
        rewards.setdefault(block["dataset"], []).append(row["reward"])
    assert {k: len(v) for k, v in rewards.items()} == {"basic_arithmetic": 6, "chain_sum": 3, "spell_backward": 3}
    assert set(rewards["basic_arithmetic"]) == {1.0} and max(rewards["spell_backward"]) < 1.0  # the toy model

    # the same seed in another process (another hash seed) generates the same bytes
    other = tmp_path / "other" / "rollouts.jsonl"
    second = collect(tmp_path, *base, f"output_jsonl_fpath={other}", "limit=1", hash_seed="2")
    assert second.returncode == 0, second.stderr
    assert other.with_name("rollouts_generated_inputs.jsonl").read_bytes() == generated.read_bytes()

    # resume: the tasks are made again byte for byte, so the finished run is found complete ...
    generated.unlink()
    resumed = collect(tmp_path, *base, f"output_jsonl_fpath={out}", "resume_from_cache=true", hash_seed="3")
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_rows(out)) == 12 and len(read_rows(generated)) == 12
    # ... but a run collected with another reasoning-gym version is refused, naming it
    manifest = out.with_name("rollouts_run.json")
    stored = orjson.loads(manifest.read_bytes())
    assert stored["settings"]["environments"]["library_versions"] == {"reasoning-gym": "0.1.25"}
    stored["settings"]["environments"]["library_versions"]["reasoning-gym"] = "0.1.24"
    manifest.write_bytes(orjson.dumps(stored))
    refused = collect(tmp_path, *base, f"output_jsonl_fpath={out}", "resume_from_cache=true")
    assert refused.returncode == 2
    assert "environments.library_versions.reasoning-gym: '0.1.24' -> '0.1.25'" in refused.stderr


def nemo_gym_math_rows(tmp_path: Path) -> Path:
    packages = site_packages()
    if packages is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("the nemo-gym wheel is not installed under CI (bash scripts/setup_nemo_gym.sh)")
        pytest.skip("the nemo-gym wheel's data files need .venv-nemo-gym: bash scripts/setup_nemo_gym.sh")
    path = tmp_path / "math_rows.jsonl"
    path.write_bytes(b"".join((packages / name).read_bytes() for name in NEMO_GYM_MATH_FILES))
    return path


def test_the_math_resource_on_nemo_gyms_math_rows(embedded_server: EmbeddedProcess, tmp_path: Path) -> None:
    source = nemo_gym_math_rows(tmp_path)
    out = tmp_path / "math.jsonl"
    proc = collect(tmp_path, f"policy_base_url={embedded_server.base_url}", "resource=math",
                   f"input_jsonl_fpath={source}", f"output_jsonl_fpath={out}", "resource.params.verify_timeout_s=1")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert len(rows) == len(source.read_bytes().splitlines()) == 10
    for row in rows:
        said = parse(final_text(row["response"]))
        assert row["reward"] == float(verify(parse(row["expected_answer"]), said, timeout_seconds=1))
        assert row["extracted_answer"] == (said[-1] if said else None)
    assert {r["reward"] for r in rows} == {0.0, 1.0}  # "What is 2 + 2?" the toy model gets right


def test_a_missing_extra_stops_before_any_request(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps({"responses_create_params": {"input": "What is 2 + 2?"},
                                                      "expected_answer": "4"}) + b"\n")
    as_if_missing = ("import runpy, sys; sys.modules['math_verify'] = None; "
                     "runpy.run_module('gym_rollouts.cli.collect', run_name='__main__')")
    proc = collect(tmp_path, "resource=math", f"input_jsonl_fpath={tmp_path / 'in.jsonl'}",
                   f"output_jsonl_fpath={out}", python_prefix=as_if_missing)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'gym_rollouts[tasks]'" in proc.stderr and "math-verify" in proc.stderr
    assert not out.with_name("out_run.json").exists()


def test_doctor_samples_the_generated_tasks(embedded_server: EmbeddedProcess, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gym_rollouts.cli.doctor", "resource=reasoning_gym",
                           f"policy_base_url={embedded_server.base_url}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first rows of the tasks resource 'reasoning_gym'" in " ".join(proc.stdout.split())
