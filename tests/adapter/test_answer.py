"""Which 200 answers are usable (adapter/answer.py), table-driven over real reply bodies: the
embedded server's engine answers the body the adapter builds, then each case breaks one thing."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import orjson
import pytest

from gym_rollouts.adapter.answer import (EXCERPT_CHARS, body_excerpt, parse_generation, read_generation,
                                         read_tokenize)
from gym_rollouts.adapter.completions import build_completions_body
from gym_rollouts.adapter.request import build_chat_body
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.embedded.engine import FakeEngine
from gym_rollouts.errors import MalformedReplyError, ServerStatusError
from gym_rollouts.transport.client import Answer

SERVER = "http://10.0.0.7:8000/v1"
URL = SERVER + "/chat/completions"
PLAIN = ModelConfig()
CAPTURE = dataclasses.replace(PLAIN, return_token_id_information=True)
COMPLETIONS = dataclasses.replace(CAPTURE, use_completions_api=True)
PARAMS = {"input": "What is 2 + 3? Answer with the number.", "max_output_tokens": 32}
ENGINE = FakeEngine(EmbeddedConfig())


def reply_of(cfg: ModelConfig) -> dict[str, Any]:
    """What the embedded vLLM double answers to the body the adapter builds for ``cfg``."""
    if cfg.use_completions_api:
        return orjson.loads(ENGINE.completion(orjson.dumps(build_completions_body(PARAMS, cfg, "gym-tiny"))).body)
    return orjson.loads(ENGINE.chat(orjson.dumps(build_chat_body(PARAMS, cfg, "gym-tiny"))).body)


def ok(reply: Any, status: int = 200) -> Answer:
    return Answer(status, orjson.dumps(reply), {})


def test_a_good_reply_is_read_with_its_ids_and_usage() -> None:
    reply = reply_of(CAPTURE)
    read = read_generation(ok(reply), URL, SERVER, CAPTURE)
    assert read.captured is not None
    assert read.captured.generation_token_ids == reply["choices"][0]["token_ids"]
    assert read.captured.prompt_token_ids == reply["prompt_token_ids"]
    assert read.turn.usage["input_tokens"] == len(reply["prompt_token_ids"])
    assert read.turn.usage["output_tokens"] == len(reply["choices"][0]["token_ids"])
    assert read_generation(ok(reply_of(PLAIN)), URL, SERVER, PLAIN).captured is None


def _drop(*path: Any) -> Callable[[dict], None]:
    def edit(reply: dict) -> None:
        target = reply
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


def _set(value: Any, *path: Any) -> Callable[[dict], None]:
    def edit(reply: dict) -> None:
        target = reply
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _add_to(amount: int, *path: Any) -> Callable[[dict], None]:
    def edit(reply: dict) -> None:
        target = reply
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] += amount
    return edit


def _one_more_logprob(reply: dict) -> None:
    content = reply["choices"][0]["logprobs"]["content"]
    content.append(dict(content[-1]))


def _two_choices(reply: dict) -> None:
    reply["choices"].append({**reply["choices"][0], "index": 1})


# (case, config, edit of a good reply, text the reason must contain)
UNUSABLE = [
    ("no choices key", PLAIN, _drop("choices"), "no choices"),
    ("empty choices", PLAIN, _set([], "choices"), "no choices"),
    ("choice without message", PLAIN, _drop("choices", 0, "message"), "message is missing"),
    ("content not a string", PLAIN, _set(["x"], "choices", 0, "message", "content"), "message.content"),
    ("tool call without a name", PLAIN, _set([{"id": "c", "function": {"arguments": "{}"}}],
                                             "choices", 0, "message", "tool_calls"), "no function name"),
    ("usage count not an integer", PLAIN, _set("7", "usage", "prompt_tokens"), "usage.prompt_tokens"),
    ("usage not an object", PLAIN, _set([1, 2], "usage"), "usage must be an object"),
    ("ids vs logprobs lengths", CAPTURE, _one_more_logprob, "logprobs has"),
    ("an id disagrees with its logprob entry", CAPTURE, _add_to(1, "choices", 0, "token_ids", 0), "disagrees"),
    ("prompt ids missing although asked for", CAPTURE, _set(None, "prompt_token_ids"), "prompt_token_ids is missing"),
    ("generation ids missing although asked for", CAPTURE, _set(None, "choices", 0, "token_ids"),
     "choices[0].token_ids is missing"),
    ("no logprobs although asked for", CAPTURE, _set(None, "choices", 0, "logprobs"), "no logprobs"),
    ("two choices with token capture", CAPTURE, _two_choices, "exactly one choice"),
    ("prompt_tokens contradicts the prompt ids", CAPTURE, _add_to(1, "usage", "prompt_tokens"), "usage.prompt_tokens"),
    ("completion_tokens contradicts the ids", CAPTURE, _add_to(-1, "usage", "completion_tokens"),
     "usage.completion_tokens"),
    ("completions: text not a string", COMPLETIONS, _set(None, "choices", 0, "text"), "choices[0].text"),
    ("completions: prompt ids contradict usage", COMPLETIONS, _add_to(2, "usage", "prompt_tokens"), "usage.prompt_tokens"),
]


@pytest.mark.parametrize("cfg,edit,reason", [c[1:] for c in UNUSABLE], ids=[c[0] for c in UNUSABLE])
def test_an_unusable_200_is_a_retryable_error_naming_the_server(cfg, edit, reason) -> None:
    reply = reply_of(cfg)
    edit(reply)
    with pytest.raises(MalformedReplyError) as caught:
        read_generation(ok(reply), URL, SERVER, cfg)
    err = caught.value
    assert err.retryable and err.server == SERVER
    message = str(err)
    assert message.startswith(f"{URL} answered HTTP 200 with a body we cannot use: ") and reason in message
    excerpt = message.split("bytes): ", 1)[1]
    assert len(excerpt) <= EXCERPT_CHARS and excerpt[:20] == orjson.dumps(reply).decode()[:20]


@pytest.mark.parametrize("body", [b"<html><h1>502 Bad Gateway</h1></html>", b"", b'{"choices": [', b"\xff\xfe"],
                         ids=["html page", "empty", "torn json", "not utf-8"])
def test_a_body_that_is_not_json_is_retryable_with_an_excerpt(body: bytes) -> None:
    with pytest.raises(MalformedReplyError, match="not JSON") as caught:
        read_generation(Answer(200, body, {}), URL, SERVER, PLAIN)
    assert caught.value.server == SERVER
    assert str(caught.value).endswith(f"body ({len(body)} bytes): {body.decode('utf-8', 'replace')}")


def test_capture_checks_do_not_apply_without_token_capture() -> None:
    reply = reply_of(PLAIN)
    reply["prompt_token_ids"] = [1]  # a server that sends ids nobody asked for is not checked
    reply["usage"]["prompt_tokens"] += 5
    assert read_generation(ok(reply), URL, SERVER, PLAIN).turn.usage["input_tokens"] == reply["usage"]["prompt_tokens"]


@pytest.mark.parametrize("cfg", [PLAIN, CAPTURE, COMPLETIONS], ids=["plain", "capture", "completions"])
def test_a_reply_without_usage_is_usable_and_its_usage_unknown(cfg) -> None:
    reply = reply_of(cfg)
    del reply["usage"]
    read = parse_generation(reply, cfg)
    assert read.turn.usage is None
    if cfg.return_token_id_information:
        assert read.captured is not None and read.captured.generation_token_ids


@pytest.mark.parametrize("status,retryable", [(400, False), (404, False), (429, True), (500, True), (503, True)])
def test_an_error_status_is_a_status_error(status: int, retryable: bool) -> None:
    body = {"error": {"message": "boom", "type": "X", "param": None, "code": status}}
    with pytest.raises(ServerStatusError) as caught:
        read_generation(Answer(status, orjson.dumps(body), {}, "3"), URL, SERVER, PLAIN)
    err = caught.value
    assert (err.status, err.retryable, err.server, err.server_message) == (status, retryable, SERVER, "boom")
    assert err.retry_after == "3"  # the router honours it as for the transport's own calls
    assert not isinstance(err, MalformedReplyError)


def test_tokenize_answers() -> None:
    url = "http://10.0.0.7:8000/tokenize"
    assert read_tokenize(ok({"count": 2, "tokens": [4, 5], "max_model_len": 64}), url, SERVER) == [4, 5]
    for bad in ({"count": 2}, {"tokens": ["4"]}, {"tokens": [True]}, [4, 5]):
        with pytest.raises(MalformedReplyError, match="no token list") as caught:
            read_tokenize(ok(bad), url, SERVER)
        assert caught.value.server == SERVER


def test_body_excerpt_keeps_head_and_tail_within_the_limit() -> None:
    assert body_excerpt(b"short") == "short"
    exact = b"x" * EXCERPT_CHARS
    assert body_excerpt(exact) == exact.decode()
    long = b'{"choices": [' + b"a" * 5000 + b'], "usage": {"prompt_tokens": 3}}'
    excerpt = body_excerpt(long)
    assert len(excerpt) <= EXCERPT_CHARS
    assert excerpt.startswith('{"choices": [aaa') and excerpt.endswith('"usage": {"prompt_tokens": 3}}')
    multibyte = "é".encode() * 400  # a cut inside a character never raises
    assert len(body_excerpt(multibyte)) <= EXCERPT_CHARS
