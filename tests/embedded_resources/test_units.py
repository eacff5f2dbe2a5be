"""Unit tests (pure logic, table-driven): validation, faults, sessions, verify helpers, config."""

from __future__ import annotations

import pytest

from gym_rollouts.embedded_resources import HeadConfig, ResourcesConfig, config_from_argv, config_to_argv
from gym_rollouts.embedded_resources.env import last_assistant_text
from gym_rollouts.embedded_resources.faults import FaultTable, parse_fault_spec
from gym_rollouts.embedded_resources.sessions import SessionSigner, SessionStore
from gym_rollouts.embedded_resources.validation import ValidationFailed, coerce_int, parse_body


@pytest.mark.parametrize("value, expected", [
    (3, 3), (True, 1), (2.0, 2), ("7", 7), (" 8 ", 8), ("1_000", 1000), ("+3", 3), ("-2", -2), ("7.0", 7),
    (1.5, "int_from_float"), ("x", "int_parsing"), ("0x10", "int_parsing"), ("", "int_parsing"),
    (1e20, "int_parsing_size"), (float("nan"), "int_parsing_size"), (None, "int_type"), ([1], "int_type"),
])
def test_coerce_int_follows_pydantic_lax_mode(value, expected):
    ok, out = coerce_int(value, ("body", "n"))
    if isinstance(expected, int):
        assert ok and out == expected and type(out) is int
    else:
        assert not ok and out["type"] == expected and out["loc"] == ["body", "n"] and out["input"] is value


@pytest.mark.parametrize("content_type, raw, expected", [
    ("application/json", b'{"a": 1}', {"a": 1}),
    ("application/json; charset=utf-8", b"[1]", [1]),
    ("application/vnd.x+json", b"2", 2),
    ("text/plain", b'{"a": 1}', '{"a": 1}'),
    (None, b"abc", "abc"),
])
def test_parse_body(content_type, raw, expected):
    assert parse_body(content_type, raw) == expected


@pytest.mark.parametrize("raw, kind, loc", [(b"", "missing", ["body"]), (b'{"a": ', "json_invalid", ["body", 6])])
def test_parse_body_refusals(raw, kind, loc):
    with pytest.raises(ValidationFailed) as err:
        parse_body("application/json", raw)
    assert err.value.errors[0]["type"] == kind and err.value.errors[0]["loc"] == loc


def _drain(table: FaultTable, route: str, n: int) -> list[str | None]:
    return [getattr(table.take(route), "mode", None) for _ in range(n)]


@pytest.mark.parametrize("entries, route, expected", [
    ([("/v", "500", 2)], "/v", ["500", "500", None, None]),
    ([("/v", "hang", None)], "/v", ["hang"] * 4),
    ([("/v", "500", None)], "/w", [None] * 4),
    ([("*", "503", None), ("/v", "ok", 1)], "/v", [None, "503", "503", "503"]),
    ([("*", "503", 3)], "/v", ["503", "503", "503", None]),
    ([("/v", "500", None), ("*", "drop", 1)], "/v", ["drop", None, None, None]),  # "*" replaces the table
    ([("/v", "500", None), ("*", "ok", None)], "/v", [None] * 4),
    ([("/v", "500", None), ("/v", "ok", None)], "/v", [None] * 4),
])
def test_fault_table_semantics(entries, route, expected):
    table = FaultTable(["/v", "/w"])
    for r, mode, count in entries:
        table.set(r, mode, count)
    assert _drain(table, route, 4) == expected
    injected = sum(m is not None for m in expected)
    assert table.stats()["faults_injected_total"] == injected


def test_star_count_is_shared_between_routes():
    table = FaultTable(["/v", "/w"])
    table.set("*", "500", 2)
    assert [_drain(table, "/v", 1), _drain(table, "/w", 1), _drain(table, "/v", 1)] == [["500"], ["500"], [None]]
    assert table.stats()["faults_injected"] == {"/v": {"500": 1}, "/w": {"500": 1}}


@pytest.mark.parametrize("spec, expected", [
    ("/verify=500", ("/verify", "500", None)), ("*=hang:3", ("*", "hang", 3)), ("/=slow:1", ("/", "slow", 1)),
])
def test_parse_fault_spec(spec, expected):
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize("spec", ["/verify", "=500", "/verify=", "/verify=500:x", "/verify=500:-1"])
def test_parse_fault_spec_refusals(spec):
    with pytest.raises(ValueError, match="--fault"):
        parse_fault_spec(spec)


def test_signed_sessions():
    signer, other = SessionSigner(), SessionSigner()
    sid, new = signer.resolve(None)
    assert new and signer.issued == 1
    value = signer.sign(sid)
    assert signer.resolve(value) == (sid, False) and signer.issued == 1
    for bad in (value[:-1] + ("A" if value[-1] != "A" else "B"), sid, "", "x.y", "." + value.split(".")[1]):
        assert signer.unsign(bad) is None
    assert other.unsign(value) is None  # another process, another secret


def test_session_store():
    store = SessionStore()
    store.seed("a", 3)
    store.seed("a", 9)  # a second seed keeps the count, as NeMo Gym's setdefault does
    store.add("a", 2)
    assert (store.value("a"), store.known("b"), store.alive) == (5, None, 1)
    assert store.value("b") == 0 and store.alive == 2


@pytest.mark.parametrize("output, expected", [
    ([], None),
    ([{"type": "function_call"}], None),
    ([{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"},
                                                         {"type": "output_text", "text": "b"}]}], "ab"),
    ([{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
      {"type": "message", "role": "user", "content": "no"}], "x"),
    ([{"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "r"}]}], ""),
    (["junk", {"type": "message", "role": "assistant", "content": "plain"}], "plain"),
])
def test_last_assistant_text(output, expected):
    assert last_assistant_text(output) == expected


@pytest.mark.parametrize("cfg", [
    ResourcesConfig(),
    ResourcesConfig(host="127.0.0.2", port=5, name="n", faults=("*=hang", "/verify=500:2"), openapi=False,
                    latency_ms=1.5, slow_ms=3.0, log_size=7),
    HeadConfig(port=9, envs=(("e", "http://127.0.0.1:5"),), env_types=(("e", "impl"),), agents=(("a", "e"),),
               agent_types=(("a", "t"),)),
])
def test_config_argv_round_trip(cfg):
    assert config_from_argv(config_to_argv(cfg)) == cfg


@pytest.mark.parametrize("kwargs, message", [
    ({"faults": ("/v=boom",)}, "unknown mode"), ({"name": "a b"}, "--name"), ({"latency_ms": -1}, ">= 0"),
    ({"log_size": 0}, "--log-size"),
])
def test_resources_config_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResourcesConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"envs": (("e", "https://h:1"),)}, "http://HOST:PORT"),
    ({"envs": (("e", "http://h"),)}, "http://HOST:PORT"),
    ({"agents": (("a", "e"),)}, "no --env named 'e'"),
    ({"env_types": (("e", "i"),)}, "--env-type e"),
    ({"envs": (("e", "http://h:1"),), "agent_types": (("a", "t"),)}, "--agent-type a"),
])
def test_head_config_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig(**kwargs)
