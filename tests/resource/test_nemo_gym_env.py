"""``resource=nemo_gym`` over real sockets: collect -> the embedded vLLM-compatible server for the
model, and our embedded NeMo-Gym-style resources server (a subprocess, faults on demand) for the
environment. Protocol (seed / tools / verify, the per-rollout cookie), the up-front checks, faults
(retried, then failure rows naming the environment and the call), the in-flight bound, no
leaked sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from gym_rollouts.embedded_resources import ResourcesControl, cookie_name, resources_subprocess
from gym_rollouts.errors import InputError, StartupError
from nemo_gym_helpers import collect, counter_row, metrics, model_calls, weather_row

ENV = "wire_env"


@pytest.fixture(scope="module")
def env_server() -> Iterator:
    with resources_subprocess(["--name", ENV, "--slow-ms", "400"]) as proc:
        yield proc


@pytest.fixture
def env(env_server) -> Iterator[ResourcesControl]:
    ctl = ResourcesControl(env_server.url)
    ctl.clear_faults()
    ctl.clear_requests()
    yield ctl
    ctl.clear_faults()


def _env_args(url: str, *extra: str) -> list[str]:
    return ["resource=nemo_gym", f"resource.params.url={url}", *extra]


async def test_tool_calls_and_verify_go_to_the_environment(tmp_path: Path, embedded_server, env_server, env) -> None:
    rows = [weather_row(city) for city in ("Paris", "Oslo", "Lima")]
    result, out, failures = await collect(tmp_path, embedded_server.base_url, rows, *_env_args(env_server.url))
    assert failures == [] and len(out) == 3 and result.failures == 0
    for row in out:
        assert row["reward"] == 1.0
        assert row["num_tool_calls"] == 1  # an extra field of /verify reaches the output row
        outputs = [i for i in row["response"]["output"] if i["type"] == "function_call_output"]
        city = row["responses_create_params"]["input"][1]["content"].split(" in ")[1].rstrip("?")
        # the body text of the tool's answer, exactly as the server sent it
        assert orjson.loads(outputs[0]["output"]) == {"city": city, "weather_description": f"The weather in {city} is cold."}
    paths = [r["path"] for r in env.requests()]
    assert paths.count("/seed_session") == 3 and paths.count("/get_weather") == 3 and paths.count("/verify") == 3
    seeded = [r["body"] for r in env.requests() if r["path"] == "/seed_session"]
    assert {b["_ng_task_index"] for b in seeded} == {0, 1, 2}  # the whole row, indices included, as NeMo Gym sends it
    # after the run, the environment's own /aggregate_metrics, with the rows stripped as NeMo Gym strips them
    [asked] = [r["body"] for r in env.requests() if r["path"] == "/aggregate_metrics"]
    assert len(asked["verify_responses"]) == 3
    assert all("responses_create_params" not in v and "_gr" not in v and set(v["response"]) == {"usage"}
               for v in asked["verify_responses"])
    [entry] = metrics(tmp_path)
    assert entry["metrics_from"].startswith("the environment's /aggregate_metrics")
    assert entry["key_metrics"] == {"mean/reward": 1.0} and entry["agent_metrics"]["num_rollouts"] == 3
    assert entry["agent_metrics"]["count"] == 3  # ours are kept beside the environment's
    assert [g["num_rollouts"] for g in entry["group_level_metrics"]] == [1, 1, 1]


async def test_each_rollout_keeps_its_own_session_cookie(tmp_path: Path, embedded_server, env_server, env) -> None:
    rows = [counter_row(start, add) for start, add in ((3, 4), (10, 5), (0, 7), (1, 1))]
    _, out, failures = await collect(tmp_path, embedded_server.base_url, rows, *_env_args(env_server.url),
                                     "num_repeats=2", "num_samples_in_parallel=8")
    assert failures == [] and len(out) == 8
    assert [r["reward"] for r in out] == [1.0] * 8  # state found at verify: the cookie round-tripped
    log = [r for r in env.requests() if r["method"] == "POST" and r["path"] != "/aggregate_metrics"]
    by_cookie: dict[str, list[str]] = {}
    for entry in log:
        assert entry["path"] == "/seed_session" or entry["cookie"], entry  # every later call sends it
        if entry["path"] != "/seed_session":
            value = entry["cookie"].split(f"{cookie_name(ENV)}=", 1)[1].split(";")[0]
            by_cookie.setdefault(value, []).append(entry["path"])
    assert len(by_cookie) == 8  # one session per rollout, never shared
    assert all(paths == ["/increment_counter", "/verify"] for paths in by_cookie.values())


async def test_bad_arguments_go_back_to_the_model_as_the_tool_output(tmp_path: Path, embedded_server,
                                                                     env_server, env) -> None:
    env.set_fault("/get_weather", "422")
    _, out, failures = await collect(tmp_path, embedded_server.base_url, [weather_row()], *_env_args(env_server.url))
    assert failures == [] and out[0]["reward"] == 1.0
    output = next(i for i in out[0]["response"]["output"] if i["type"] == "function_call_output")["output"]
    assert "detail" in orjson.loads(output)  # FastAPI's validation body, as NeMo Gym's agent passes it on


@pytest.mark.parametrize("mode", ["500", "503", "malformed", "drop"])
async def test_a_transient_fault_is_retried(tmp_path: Path, embedded_server, env_server, env, mode: str) -> None:
    env.set_fault("/verify", mode, count=1)
    _, out, failures = await collect(tmp_path, embedded_server.base_url, [weather_row()], *_env_args(env_server.url))
    assert failures == [] and out[0]["reward"] == 1.0
    assert [r["path"] for r in env.requests()].count("/verify") == 2


@pytest.mark.parametrize("route, call", [("/verify", "verify"), ("/seed_session", "seed_session"),
                                         ("/get_weather", "get_weather")])
@pytest.mark.parametrize("mode", ["500", "malformed"])
async def test_a_lasting_fault_is_a_failed_attempt_naming_the_environment(tmp_path: Path, embedded_server, env_server,
                                                                           env, route: str, call: str, mode: str) -> None:
    env.set_fault(route, mode)
    result, out, failures = await collect(tmp_path, embedded_server.base_url, [weather_row()], *_env_args(env_server.url),
                                          "max_attempts=2", "transport.retry_budget.status_5xx=2",
                                          "transport.retry_budget.malformed=1")
    assert out == [] and result.failures == 1 and len(failures) == 2  # never a row with reward 0
    for failure in failures:
        assert failure["error_class"] == "EnvironmentCallError"
        assert failure["environment"] and failure["call"] == call
        assert env_server.url in failure["message"] and call in failure["message"]
        assert failure["server"] == env_server.url
    assert [r["path"] for r in env.requests()].count(route) == 2 * (3 if mode == "500" else 2)  # retries per attempt


async def test_a_hung_environment_times_out(tmp_path: Path, embedded_server, env_server, env) -> None:
    env.set_fault("/verify", "hang")
    result, out, failures = await collect(tmp_path, embedded_server.base_url, [weather_row()],
                                          *_env_args(env_server.url, "resource.params.timeout_s=0.5"),
                                          "max_attempts=1", "transport.retry_budget.timeout=1")
    assert out == [] and result.failures == 1
    assert failures[0]["call"] == "verify" and "0.5" in failures[0]["message"]


async def test_requests_in_flight_are_bounded(tmp_path: Path, embedded_server, env_server, env) -> None:
    env.set_fault("/verify", "slow")
    before = env.stats()["max_in_flight"].get("/verify", 0)
    assert before <= 2
    _, out, _ = await collect(tmp_path, embedded_server.base_url, [weather_row(str(i)) for i in range(8)],
                              *_env_args(env_server.url, "resource.params.max_in_flight=2"), "num_samples_in_parallel=8")
    assert len(out) == 8
    assert env.stats()["max_in_flight"]["/verify"] == 2


async def test_no_session_is_left_behind(tmp_path: Path, embedded_server, env_server, env) -> None:
    env.set_fault("/verify", "500", count=4)  # the first rollouts fail for good, the others pass
    await collect(tmp_path, embedded_server.base_url, [weather_row(str(i)) for i in range(6)],
                  *_env_args(env_server.url), "max_attempts=1", "transport.retry_budget.status_5xx=1",
                  "num_samples_in_parallel=1")
    stats = metrics(tmp_path)[0]["run"]["environments"][0]
    assert stats["failed_calls"] == {"verify": 2} and stats["calls"]["verify"] == 6
    assert stats["live_sessions"] == 0 and stats["live_rollouts"] == 0


async def test_a_cancelled_rollout_drops_its_session(env_server, env) -> None:
    from gym_rollouts.config.schema import RouterConfig, TransportConfig
    from gym_rollouts.resource.base import ResourceContext
    from gym_rollouts.resource.nemo_gym import NemoGymEnvironment
    from gym_rollouts.transport.client import HttpTransport

    env.set_fault("/get_weather", "hang")
    resource = NemoGymEnvironment(url=env_server.url)
    async with HttpTransport(TransportConfig(), concurrency=2) as http:
        await resource.start(ResourceContext(http, RouterConfig(health_interval_s=0), TransportConfig()))
        try:
            state = await resource.seed(weather_row())
            assert resource.live_sessions == 1 and state.cookies
            task = asyncio.create_task(resource.call_tool(state, "get_weather", {"city": "x"}))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await resource.close(state)
            assert resource.live_sessions == 0 and not state.cookies
            assert resource._dispatcher.policy.live_rollouts == 0
        finally:
            await resource.stop()


async def test_an_unreachable_environment_is_refused_before_any_model_request(tmp_path: Path, embedded_server) -> None:
    before = model_calls(embedded_server)
    with pytest.raises(StartupError, match="not reachable.*ng_run"):
        await collect(tmp_path, embedded_server.base_url, [weather_row()], *_env_args("http://127.0.0.1:9"))
    assert model_calls(embedded_server) == before


async def test_a_row_whose_tools_the_environment_does_not_serve_is_refused(tmp_path: Path, embedded_server,
                                                                            env_server, env) -> None:
    other = weather_row()
    other["responses_create_params"]["tools"] = [dict(other["responses_create_params"]["tools"][0], name="search")]
    with pytest.raises(InputError) as info:
        await collect(tmp_path, embedded_server.base_url, [weather_row(), other], *_env_args(env_server.url))
    assert ":2: offers the model tool(s) search" in str(info.value) and ":1:" not in str(info.value)
    assert [r for r in env.requests() if r["method"] == "POST"] == []  # nothing sent, not even to the environment


async def test_a_second_agent_in_a_single_environment_run_is_refused(tmp_path: Path, embedded_server,
                                                                       env_server, env) -> None:
    rows = [weather_row(agent="weather_agent"), weather_row(agent="weather_agent"), weather_row(agent="other_agent")]
    with pytest.raises(InputError, match=r":3: agent 'other_agent' is a second agent .*environments\.other_agent="):
        await collect(tmp_path, embedded_server.base_url, rows, *_env_args(env_server.url))


async def test_when_the_environment_cannot_aggregate_our_metrics_stand_alone(tmp_path: Path, embedded_server,
                                                                              env_server, env) -> None:
    env.set_fault("/aggregate_metrics", "500")
    result, out, failures = await collect(tmp_path, embedded_server.base_url, [weather_row()],
                                          *_env_args(env_server.url), "transport.retry_budget.status_5xx=1")
    assert failures == [] and len(out) == 1 and result.metrics_written
    [entry] = metrics(tmp_path)
    assert "metrics_from" not in entry and entry["key_metrics"]["mean/reward"] == 1.0
