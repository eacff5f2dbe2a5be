"""Input edge cases (issue 12, item 10): an input that leaves nothing to run is an error (exit 2),
not "Wrote 0 rollouts"; sampling values vLLM would refuse are found by the input scan with their
line numbers (and once, for the config's own); a failure that would repeat exactly (the row's
request refused) is recorded once as terminal instead of being retried, also across resumes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine_helpers import read_rows, served_requests, write_tasks
from gym_rollouts.adapter.messages import RequestConversionError
from gym_rollouts.adapter.sampling import body_sampling_problems, sampling_problems
from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.attempts import fails_the_same_way_again
from gym_rollouts.engine.inputs import refuse_empty
from gym_rollouts.errors import (ConfigError, InputError, ServerStatusError, ToolSupportError, TransportError,
                                 ResourceError)
from gym_rollouts.io.source import RowRules, scan_file


def _row(i: int, **params) -> bytes:
    return orjson.dumps({"responses_create_params": {"input": f"What is {i} + {i}? Answer with the number.", **params},
                         "expected_answer": str(2 * i)}) + b"\n"


# -- nothing to run ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "said"), [
    (b"", "the file is empty (0 bytes)"),
    (b"\n  \n\t\n", "its 3 line(s) are all blank"),
])
def test_an_input_without_rows_is_exit_2_and_sends_nothing(tmp_path: Path, collect, slow_server, content: bytes,
                                                           said: str) -> None:
    (tmp_path / "in.jsonl").write_bytes(content)
    before = served_requests(slow_server)
    run = collect()
    assert run.returncode == 2, run.stdout + run.stderr
    assert said in run.stderr and "holds no task row" in run.stderr and "Traceback" not in run.stderr
    assert "Wrote 0" not in run.stdout
    assert not (tmp_path / "out_run.json").exists() and served_requests(slow_server) == before


def _cfg(tmp_path: Path, *extra: str):
    return build_collect_config(compose_plain([
        "policy_base_url=http://127.0.0.1:9/v1", f"input_jsonl_fpath={tmp_path / 'in.jsonl'}",
        f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "resource=exact_match", *extra]))


def _scan(tmp_path: Path, *extra: str):
    cfg = _cfg(tmp_path, *extra)
    keep = (lambda task: task % cfg.num_shards == cfg.shard_index)
    return scan_file(tmp_path / "in.jsonl", cfg.limit, keep, RowRules(refuse_empty=refuse_empty(cfg)))


@pytest.mark.parametrize(("lines", "extra", "error", "said"), [
    ([_row(1), _row(2)], ("limit=0",), ConfigError, "limit=0 selects no row"),
    ([_row(1), _row(2)], ("num_shards=3", "shard_index=2"), ConfigError, "shard_index=2 of num_shards=3 owns no task"),
    ([b"oops\n", b"[]\n"], (), InputError, "none of the 2 row(s)"),
    ([b"oops\n", b"[]\n"], ("on_bad_input=skip",), InputError, "on_bad_input=skip leaves nothing to run"),
    ([b"\n", b"\n"], ("limit=5",), InputError, "its 2 line(s) are all blank"),
])
def test_each_way_of_leaving_nothing_to_run_is_named(tmp_path: Path, lines, extra, error, said) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(error, match=said.replace("(", r"\(").replace(")", r"\)")):
        _scan(tmp_path, *extra)


def test_an_input_with_something_to_run_is_not_refused(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"\n" + _row(1) + b"oops\n")
    scan = _scan(tmp_path, "on_bad_input=skip")
    assert (scan.owned_rollouts, scan.blank_lines, scan.problem_count) == (1, 1, 1)


# -- sampling values --------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "said"), [
    ({"temperature": 0.7, "top_p": 1, "max_output_tokens": 64.0, "seed": -3, "stop": ["\n"], "top_k": -1}, None),
    ({"temperature": None, "reasoning": {"effort": "high"}, "parallel_tool_calls": False}, None),
    ({"temperature": "hot"}, "temperature must be a number in [0, 2], got 'hot'"),
    ({"temperature": 2.5}, "temperature must be a number in [0, 2], got 2.5"),
    ({"temperature": True}, "temperature must be a number"),
    ({"top_p": 0}, "top_p must be a number in (0, 1], got 0"),
    ({"max_output_tokens": -5}, "max_output_tokens must be an integer >= 1, got -5"),
    ({"max_output_tokens": 0}, "max_output_tokens must be an integer >= 1, got 0"),
    ({"max_output_tokens": 8.5}, "max_output_tokens must be an integer >= 1"),
    ({"max_output_tokens": "64"}, "max_output_tokens must be an integer >= 1, got '64'"),
    ({"top_k": -2}, "top_k must be an integer >= -1"),
    ({"min_p": 1.5}, "min_p must be a number in [0, 1]"),
    ({"presence_penalty": 3}, "presence_penalty must be a number in [-2, 2]"),
    ({"frequency_penalty": -2.1}, "frequency_penalty must be a number in [-2, 2]"),
    ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
    ({"seed": 2 ** 64}, "seed must be an integer in"),
    ({"stop": ["ok", ""]}, "stop must be a non-empty string or a list of non-empty strings"),
    ({"stop": 5}, "stop must be a non-empty string"),
    ({"top_logprobs": -3}, "top_logprobs must be an integer >= -1"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls must be true or false"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort must be one of"),
    ({"temperature": float("nan")}, "temperature must be a number in [0, 2], got nan"),
])
def test_sampling_rules(params: dict, said: str | None) -> None:
    problems = sampling_problems(params)
    if said is None:
        assert problems == []
    else:
        assert len(problems) == 1 and said in problems[0] and problems[0].startswith("responses_create_params.")


def test_body_sampling_rules_use_the_chat_body_names() -> None:
    assert body_sampling_problems({"max_tokens": 0, "temperature": 1.0}, "model.sampling_overrides.") == [
        "model.sampling_overrides.max_tokens must be an integer >= 1, got 0"]
    assert body_sampling_problems({"max_output_tokens": 0, "logit_bias": {"1": 5}}, "x.") == []  # not body fields


def test_bad_sampling_values_are_listed_by_line_before_anything_is_sent(tmp_path: Path, collect,
                                                                        slow_server) -> None:
    lines = [_row(1), _row(2, temperature="hot"), _row(3, max_output_tokens=-5), _row(4), _row(5, top_p=1.5),
             _row(6, temperature=0.5)]
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    before = served_requests(slow_server)
    run = collect()
    assert run.returncode == 2, run.stdout + run.stderr
    path = tmp_path / "in.jsonl"
    assert "3 bad input line(s)" in run.stderr
    assert f"{path}:2: responses_create_params.temperature must be a number in [0, 2], got 'hot'" in run.stderr
    assert f"{path}:3: responses_create_params.max_output_tokens must be an integer >= 1, got -5" in run.stderr
    assert f"{path}:5: responses_create_params.top_p must be a number in (0, 1], got 1.5" in run.stderr
    assert f"{path}:1:" not in run.stderr and f"{path}:6:" not in run.stderr
    assert served_requests(slow_server) == before and not (tmp_path / "out_run.json").exists()

    skipped = collect("on_bad_input=skip")  # the good rows run, the bad ones are recorded once each
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert sorted(r["_ng_task_index"] for r in read_rows(tmp_path / "out.jsonl")) == [0, 3, 5]
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted(f["input_line"] for f in failures) == [2, 3, 5]
    assert all(f["_ng_failure_terminal"] is True and f["error_class"] == "InputError" for f in failures)


def test_bad_sampling_values_of_the_config_are_one_error(tmp_path: Path, collect) -> None:
    write_tasks(tmp_path / "in.jsonl", 3)
    run = collect("responses_create_params.temperature=hot", "model.top_p=1.5",
                  "+model.sampling_overrides.max_tokens=-5")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "responses_create_params.temperature must be a number in [0, 2], got 'hot'" in run.stderr
    assert "model.top_p must be a number in (0, 1], got 1.5" in run.stderr
    assert "model.sampling_overrides.max_tokens must be an integer >= 1, got -5" in run.stderr
    assert "in.jsonl:" not in run.stderr  # not repeated on every line
    assert not (tmp_path / "out_run.json").exists()


# -- failures that would repeat exactly -------------------------------------------------------------

@pytest.mark.parametrize(("exc", "answered", "terminal"), [
    (RequestConversionError("token capture requires n == 1"), 0, True),
    (ServerStatusError(400, "bad"), 0, True),
    (ServerStatusError(413, "too large"), 0, True),
    (ServerStatusError(422, "unprocessable"), 0, True),
    (ServerStatusError(400, "bad"), 1, False),  # a later turn: its request holds sampled output
    (RequestConversionError("a sampled tool call"), 2, False),
    (ToolSupportError(400, "no tool parser"), 0, False),  # stops the run instead
    (ServerStatusError(404, "model not found"), 0, False),
    (ServerStatusError(429, "busy"), 0, False),
    (ServerStatusError(503, "down"), 0, False),
    (TransportError("refused"), 0, False),
    (ResourceError("tool crashed"), 0, False),
    (ValueError("a bug in a resource"), 0, False),
])
def test_which_failures_are_terminal(exc: BaseException, answered: int, terminal: bool) -> None:
    assert fails_the_same_way_again(exc, answered_model_calls=answered) is terminal


@pytest.mark.parametrize("extra", [
    ("+model.extra_body.n=two",),  # the server answers 400 (n must be an integer)
    ("model=vllm_for_training", "+model.sampling_overrides.n=2"),  # the adapter refuses: capture needs n == 1
])
def test_a_request_refused_as_such_is_recorded_once_and_not_retried(tmp_path: Path, collect,
                                                                    extra: tuple[str, ...]) -> None:
    write_tasks(tmp_path / "in.jsonl", 4)
    run = collect("max_attempts=3", *extra)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "4 rollouts FAILED" in run.stdout and "retries: " not in run.stdout
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted((f["_ng_task_index"], f["attempt"]) for f in failures) == [(i, 1) for i in range(4)]
    assert all(f["_ng_failure_terminal"] is True for f in failures)

    again = collect("max_attempts=5", "resume_from_cache=true", *extra)  # terminal: not even a resume retries
    assert again.returncode == 3, again.stdout + again.stderr
    assert len(read_rows(tmp_path / "out_failures.jsonl")) == 4
