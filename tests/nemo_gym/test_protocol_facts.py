"""Pin the NeMo Gym (0.4.0) resources-server and head-server facts our client relies on, by talking
to real servers started with ``ng_run`` (plain urllib, no client code of ours). See
docs/nemo_gym_tier.md for the same facts in prose. The last section checks the launcher's own
promises (names, discovery, a stop that leaves nothing)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from gym_rollouts.testing import nemo_gym as ng

TOOL_ENV = "example_single_tool_call"
MCQA = "mcqa"
STATE_ENV = "example_session_state_mgmt"

# env -> (server class in the cookie name, config instance name, agent name, tools)
SHIPPED = {
    TOOL_ENV: ("SimpleWeatherResourcesServer", TOOL_ENV, f"{TOOL_ENV}_simple_agent", {"get_weather"}),
    MCQA: ("MCQAResourcesServer", MCQA, "mcqa_simple_agent", set()),
    STATE_ENV: ("StatefulCounterResourcesServer", f"{STATE_ENV}_resources_server", f"{STATE_ENV}_simple_agent",
                {"increment_counter", "get_counter_value"}),
}
BUILTIN_ROUTES = {"/seed_session", "/verify", "/aggregate_metrics"}
# The Responses fields /verify refuses to go without (422 when one is missing).
REQUIRED_RESPONSE_FIELDS = ("id", "object", "created_at", "model", "output", "parallel_tool_calls",
                            "tool_choice", "tools")
B64 = r"[A-Za-z0-9_\-]+"
COOKIE_RE = re.compile(rf"^(?P<name>[A-Za-z0-9_]+___[A-Za-z0-9_]+)=(?P<value>{B64}\.{B64}\.{B64})$")


def call(url: str, body: object = None, *, cookie: str | None = None, method: str | None = None):
    """One request: ``(status, Set-Cookie headers, parsed JSON body)``."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    req = urllib.request.Request(url, data=data, headers=headers,
                                 method=method or ("GET" if data is None else "POST"))
    try:
        resp = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        resp = e
    with resp:
        return resp.status, resp.headers.get_all("set-cookie") or [], json.loads(resp.read() or b"null")


def session_cookie(set_cookies: list[str]) -> str:
    """The ``name=value`` pair of the single Set-Cookie header."""
    assert len(set_cookies) == 1, set_cookies
    return set_cookies[0].split(";", 1)[0]


def session_id(cookie: str) -> str:
    payload = cookie.split("=", 1)[1].split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["session_id"]


def rows(stack, env: str) -> list[dict]:
    path = stack.example_jsonl(env) if stack.site_packages else None
    if path is None or not path.is_file():
        pytest.skip(f"no local example rows for {env} (bash scripts/setup_nemo_gym.sh)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def response_with(text: str = "", **changes) -> dict:
    """A minimal Responses object with one assistant message."""
    out = {"id": "resp_test", "object": "response", "created_at": 0, "model": "m",
           "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
           "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}]}
    out.update(changes)
    return out


# --- liveness and discovery of tools -------------------------------------------------------------

def test_every_server_answers_root_with_status_ok(nemo_gym_stack, nemo_gym_env):
    urls = [nemo_gym_stack.head_url] + [nemo_gym_env(env).url for env in SHIPPED]
    for url in urls:
        status, _, body = call(url + "/")
        assert (status, body) == (200, {"status": "ok"}), url


@pytest.mark.parametrize("env", sorted(SHIPPED))
def test_openapi_lists_each_tool_as_a_post_path(nemo_gym_env, env):
    status, _, spec = call(nemo_gym_env(env).url + "/openapi.json")
    assert status == 200
    paths = spec["paths"]
    assert set(paths) == BUILTIN_ROUTES | {f"/{t}" for t in SHIPPED[env][3]}
    assert all(list(ops) == ["post"] for ops in paths.values()), paths
    if env == STATE_ENV:  # a tool without arguments declares no request body
        assert "requestBody" not in paths["/get_counter_value"]["post"]
        assert "requestBody" in paths["/increment_counter"]["post"]


def test_unknown_tool_is_a_plain_404(nemo_gym_env):
    status, _, body = call(nemo_gym_env(TOOL_ENV).url + "/no_such_tool", {})
    assert (status, body) == (404, {"detail": "Not Found"})


# --- sessions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", sorted(SHIPPED))
def test_seed_session_answers_empty_object_and_sets_the_session_cookie(nemo_gym_stack, nemo_gym_env, env):
    row = rows(nemo_gym_stack, env)[0]
    status, set_cookies, body = call(nemo_gym_env(env).url + "/seed_session", row)
    assert (status, body) == (200, {})
    header = set_cookies[0]
    cookie = session_cookie(set_cookies)
    m = COOKIE_RE.match(cookie)
    assert m, cookie
    server_class, instance = SHIPPED[env][0], SHIPPED[env][1]
    assert m["name"] == f"{server_class}___{instance}"
    assert uuid.UUID(session_id(cookie))
    attrs = {a.strip().lower() for a in header.split(";")[1:]}
    assert {"path=/", "max-age=1209600", "httponly", "samesite=lax"} <= attrs, header


def test_cookie_is_set_on_every_response_and_kept_when_sent_back(nemo_gym_env):
    url = nemo_gym_env(TOOL_ENV).url
    _, first, _ = call(url + "/")  # even GET / opens a session
    c1 = session_cookie(first)
    _, again, _ = call(url + "/get_weather", {"city": "SF"}, cookie=c1)
    assert session_id(session_cookie(again)) == session_id(c1)
    _, fresh, _ = call(url + "/get_weather", {"city": "SF"})
    assert session_id(session_cookie(fresh)) != session_id(c1)
    tampered = c1[:-2] + ("AA" if not c1.endswith("AA") else "BB")
    status, replaced, _ = call(url + "/get_weather", {"city": "SF"}, cookie=tampered)
    assert status == 200 and session_id(session_cookie(replaced)) != session_id(c1)  # silently a new session


def test_session_state_lives_per_cookie(nemo_gym_stack, nemo_gym_env):
    url = nemo_gym_env(STATE_ENV).url
    row = rows(nemo_gym_stack, STATE_ENV)[0]
    assert row["expected_count"] == row["initial_count"] + 1 + 2  # "add 1 then add 2"
    status, set_cookies, _ = call(url + "/seed_session", row)
    cookie = session_cookie(set_cookies)
    for count in (1, 2):
        assert call(url + "/increment_counter", {"count": count}, cookie=cookie)[::2] == (200, {"success": True})
    counter = call(url + "/get_counter_value", cookie=cookie, method="POST")
    assert counter[::2] == (200, {"count": row["expected_count"]})
    verify = {**row, "response": response_with("done")}
    assert call(url + "/verify", verify, cookie=cookie)[2]["reward"] == 1.0
    wrong = {**verify, "expected_count": row["expected_count"] + 1}
    assert call(url + "/verify", wrong, cookie=cookie)[2]["reward"] == 0.0
    # The same calls without the cookie: each lands in a new session; verify scores 0.
    call(url + "/seed_session", row)
    for count in (1, 2):
        assert call(url + "/increment_counter", {"count": count})[0] == 200
    assert call(url + "/get_counter_value", method="POST")[2] == {"count": 0}
    assert call(url + "/verify", verify)[2]["reward"] == 0.0


def test_seed_session_validates_the_env_fields_of_the_row(nemo_gym_env):
    status, _, body = call(nemo_gym_env(STATE_ENV).url + "/seed_session", {})
    assert status == 422
    assert [(d["type"], d["loc"]) for d in body["detail"]] == [("missing", ["body", "initial_count"])]
    status, _, body = call(nemo_gym_env(TOOL_ENV).url + "/seed_session", method="POST")  # no body at all
    assert status == 422 and body["detail"][0]["loc"] == ["body"]


# --- tool calls ----------------------------------------------------------------------------------

def test_tool_call_answers_the_tool_json(nemo_gym_env):
    status, _, body = call(nemo_gym_env(TOOL_ENV).url + "/get_weather", {"city": "SF"})
    assert (status, body) == (200, {"city": "SF", "weather_description": "The weather in SF is cold."})


@pytest.mark.parametrize("env, tool, args, error_type, loc", [
    (TOOL_ENV, "get_weather", {"town": "SF"}, "missing", ["body", "city"]),
    (STATE_ENV, "increment_counter", {"count": "abc"}, "int_parsing", ["body", "count"]),
])
def test_bad_tool_arguments_answer_422_with_fastapi_detail(nemo_gym_env, env, tool, args, error_type, loc):
    status, _, body = call(nemo_gym_env(env).url + f"/{tool}", args)
    assert status == 422
    assert list(body) == ["detail"] and len(body["detail"]) == 1
    detail = body["detail"][0]
    assert {"type", "loc", "msg", "input"} <= set(detail)
    assert (detail["type"], detail["loc"]) == (error_type, loc)


# --- verify and aggregate_metrics ----------------------------------------------------------------

@pytest.mark.parametrize("missing", REQUIRED_RESPONSE_FIELDS)
def test_verify_requires_these_response_fields(nemo_gym_env, missing):
    response = response_with("x")
    del response[missing]
    status, _, body = call(nemo_gym_env(TOOL_ENV).url + "/verify",
                           {"responses_create_params": {"input": "hi"}, "response": response})
    assert status == 422
    assert [d["loc"] for d in body["detail"]] == [["body", "response", missing]]


def test_verify_without_response_is_422_and_a_minimal_one_is_enough(nemo_gym_env):
    url = nemo_gym_env(TOOL_ENV).url + "/verify"
    status, _, body = call(url, {"responses_create_params": {"input": "hi"}})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "response"]
    minimal = {k: response_with("x")[k] for k in REQUIRED_RESPONSE_FIELDS}
    assert call(url, {"responses_create_params": {"input": "hi"}, "response": minimal})[0] == 200


def test_verify_echo_is_the_validated_request_not_the_row(nemo_gym_stack, nemo_gym_env):
    row = {**rows(nemo_gym_stack, TOOL_ENV)[0], "task_field": 7}
    status, _, body = call(nemo_gym_env(TOOL_ENV).url + "/verify", {**row, "response": response_with("x")})
    assert status == 200
    assert list(body) == ["responses_create_params", "response", "reward"]  # task_field is dropped
    assert body["reward"] == 1.0
    params = body["responses_create_params"]
    assert params["input"][0] == {**row["responses_create_params"]["input"][0], "type": "message"}
    assert params["temperature"] is None and params["tools"] == row["responses_create_params"]["tools"]
    assert body["response"]["created_at"] == 0.0 and body["response"]["usage"] is None  # re-serialized


@pytest.mark.parametrize("text, reward, extracted", [
    ("The answer is \\boxed{B}", 1.0, "B"),
    ("\\boxed{A}", 0.0, "A"),
    ("B", 0.0, None),  # strict_single_letter_boxed wants the box
])
def test_mcqa_verify_rewards_and_extra_fields(nemo_gym_stack, nemo_gym_env, text, reward, extracted):
    row = next(r for r in rows(nemo_gym_stack, MCQA) if r["expected_answer"] == "B")
    assert row["grading_mode"] == "strict_single_letter_boxed"
    status, _, body = call(nemo_gym_env(MCQA).url + "/verify", {**row, "response": response_with(text)})
    assert status == 200
    assert list(body) == ["responses_create_params", "response", "reward", "expected_answer", "extracted_answer"]
    assert (body["reward"], body["expected_answer"], body["extracted_answer"]) == (reward, "B", extracted)


def test_mcqa_verify_without_the_task_fields_silently_scores_zero(nemo_gym_stack, nemo_gym_env):
    row = next(r for r in rows(nemo_gym_stack, MCQA) if r["expected_answer"] == "B")
    bare = {"responses_create_params": row["responses_create_params"], "response": response_with("\\boxed{B}")}
    status, _, body = call(nemo_gym_env(MCQA).url + "/verify", bare)
    assert (status, body["reward"], body["expected_answer"]) == (200, 0.0, "")


def test_aggregate_metrics_shape(nemo_gym_stack, nemo_gym_env):
    row = rows(nemo_gym_stack, MCQA)[0]
    verified = [{**row, "response": response_with("x"), "reward": r, "_ng_task_index": 0, "_ng_rollout_index": i}
                for i, r in enumerate((1.0, 0.0))]
    status, _, body = call(nemo_gym_env(MCQA).url + "/aggregate_metrics", {"verify_responses": verified})
    assert status == 200
    assert list(body) == ["group_level_metrics", "agent_metrics", "key_metrics"]
    group = body["group_level_metrics"][0]
    assert (group["_ng_task_index"], group["num_rollouts"], group["mean/reward"]) == (0, 2, 0.5)
    assert body["agent_metrics"]["mean/reward"] == 0.5 and body["agent_metrics"]["pass@2/accuracy"] == 100.0
    assert body["key_metrics"]["mean/reward"] == 0.5


# --- the head server -----------------------------------------------------------------------------

def test_head_server_instances_shape(nemo_gym_stack, nemo_gym_env):
    status, _, instances = call(nemo_gym_stack.head_url + "/server_instances")
    assert status == 200 and isinstance(instances, list)
    keys = {"name", "server_type", "host", "port", "url", "config_path", "process_name", "dir_path",
            "entrypoint", "pid", "start_time", "status", "uptime_seconds"}
    assert all(keys <= set(i) for i in instances), instances
    by_config = {i["config_path"]: i for i in instances}
    for env, (_, instance, agent, _) in SHIPPED.items():
        ep = nemo_gym_env(env)
        res = by_config[instance]
        assert (res["server_type"], res["name"], res["process_name"]) == ("resources_servers", env, instance)
        assert res["url"] == f"http://{res['host']}:{res['port']}" == ep.url
        agent_entry = by_config[agent]
        assert (agent_entry["server_type"], agent_entry["name"]) == ("responses_api_agents", "simple_agent")
    assert all(i["url"] and i["host"] == "127.0.0.1" for i in instances)


def test_head_global_config_yaml_maps_agents_to_resources_servers(nemo_gym_stack, nemo_gym_env):
    status, _, text = call(nemo_gym_stack.head_url + "/global_config_dict_yaml")
    assert status == 200 and isinstance(text, str)  # a JSON string holding YAML
    config = yaml.safe_load(text)
    for env, (_, instance, agent, _) in SHIPPED.items():
        nemo_gym_env(env)
        assert list(config[instance]["resources_servers"]) == [env]
        agent_block = config[agent]["responses_api_agents"]["simple_agent"]
        assert agent_block["resources_server"] == {"type": "resources_servers", "name": instance}
        model_ref = agent_block["model_server"]
        assert model_ref["type"] == "responses_api_models" and model_ref["name"] in config
    assert config["head_server"]["port"] == int(nemo_gym_stack.head_url.rsplit(":", 1)[1])


# --- the launcher's promises ---------------------------------------------------------------------

def test_stack_handle_names_match_the_shipped_configs(nemo_gym_stack, nemo_gym_env):
    for env, (_, instance, agent, _) in SHIPPED.items():
        ep = nemo_gym_env(env)
        assert (ep.instance, ep.agent, nemo_gym_stack.agent_name(env)) == (instance, agent, agent)
        assert nemo_gym_stack.env_url(env) == ep.url
    if nemo_gym_stack.process is not None:
        assert not nemo_gym_stack.head_url.endswith(":11000")  # a developer's own stack is left alone
        assert rows(nemo_gym_stack, MCQA)


def test_connect_stack_finds_what_was_launched(nemo_gym_stack):
    found = ng.connect_stack(nemo_gym_stack.head_url)
    assert found.endpoints == nemo_gym_stack.endpoints
    assert found.process is None and found.stop() is None  # a found stack is never stopped


def test_plan_refuses_unknown_and_repeated_envs(nemo_gym_stack):
    sp = nemo_gym_stack.site_packages
    if sp is None:
        pytest.skip("no local NeMo Gym wheel")
    with pytest.raises(ng.NemoGymStartError, match="no environment 'no_such_env'.*known: .*mcqa"):
        ng.plan_stack(["no_such_env"], sp=sp)
    with pytest.raises(ng.NemoGymStartError, match="give each environment once"):
        ng.plan_stack([MCQA, MCQA], sp=sp)
    plan = ng.plan_stack([ng.EnvSpec(MCQA, extra={"grading_mode": "lenient_boxed"})], sp=sp, head_port=12345,
                         policy_base_url="http://127.0.0.1:8000/v1")
    assert plan.config["head_server"] == {"host": "127.0.0.1", "port": 12345}
    assert plan.config[MCQA]["resources_servers"][MCQA]["grading_mode"] == "lenient_boxed"
    model = plan.config[ng.MODEL_INSTANCE]["responses_api_models"]["vllm_model"]
    assert model["base_url"] == "http://127.0.0.1:8000/v1"
    ports = [int(u.rsplit(":", 1)[1]) for u in plan.urls()]
    assert len(set(ports)) == len(ports) == 4 and 11000 not in ports


def test_stop_kills_the_whole_tree_even_what_ignores_sigint(tmp_path: Path):
    # Independent of NeMo Gym: a leader that ignores SIGINT, a child in the group and a grandchild
    # that left the group with setsid; stop() must end all three.
    script = "trap '' INT; sleep 300 & setsid sleep 301 & wait"
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    stack = ng.NemoGymStack(head_url="http://127.0.0.1:1", endpoints={}, process=proc)
    deadline = time.monotonic() + 10
    while len(stack.pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stack.pids()) == 3
    stack.stop(timeout=1.0)
    assert stack.leftovers() == [] and proc.poll() is not None
