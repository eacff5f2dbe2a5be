"""Token capture (chat + completions shapes) and the continuity tracker."""

from __future__ import annotations

import pytest

from gym_rollouts.adapter.tokens import ContinuityTracker, capture_chat_tokens, capture_completion_tokens, first_mismatch
from gym_rollouts.errors import ProtocolError

ABSENT = object()


def chat_reply(gen=(5, 6, 7), lps=(-0.5, -1.0, -2.0), *, token_ids=ABSENT, prompt=ABSENT, tokens=None):
    entries = [{"token": t, "logprob": lp, "bytes": [], "top_logprobs": []}
               for t, lp in zip(tokens or [f"token_id:{g}" for g in gen], lps)]
    choice = {"index": 0, "message": {"role": "assistant", "content": "x"}, "logprobs": {"content": entries},
              "finish_reason": "stop", "token_ids": list(gen) if token_ids is ABSENT else token_ids}
    reply = {"choices": [choice], "prompt_token_ids": [1, 2, 3] if prompt is ABSENT else prompt}
    return reply


def completion_reply(gen=(5, 6), lps=(-0.1, -0.2), *, token_ids=ABSENT, prompt=ABSENT):
    choice = {"index": 0, "text": "x", "finish_reason": "length",
              "logprobs": {"tokens": [f"token_id:{g}" for g in gen], "token_logprobs": list(lps),
                           "text_offset": [0] * len(gen), "top_logprobs": [{} for _ in gen]},
              "token_ids": list(gen) if token_ids is ABSENT else token_ids,
              "prompt_token_ids": [9, 8] if prompt is ABSENT else prompt}
    return {"choices": [choice]}


def test_chat_capture():
    c = capture_chat_tokens(chat_reply())
    assert (c.prompt_token_ids, c.generation_token_ids, c.generation_log_probs) == ([1, 2, 3], [5, 6, 7], [-0.5, -1.0, -2.0])


def test_chat_capture_without_return_token_ids_support():
    c = capture_chat_tokens(chat_reply(token_ids=None, prompt=None))
    assert c.prompt_token_ids is None  # -> /tokenize
    assert c.generation_token_ids == [5, 6, 7]


def test_completion_capture_prompt_ids_per_choice():
    c = capture_completion_tokens(completion_reply())
    assert (c.prompt_token_ids, c.generation_token_ids, c.generation_log_probs) == ([9, 8], [5, 6], [-0.1, -0.2])


BAD_CHAT = [
    ("token_ids disagree with logprob ids", chat_reply(token_ids=[5, 6, 8]), "token_ids[2]=8 disagrees"),
    ("token_ids shorter than logprobs", chat_reply(token_ids=[5, 6]), "2 ids but logprobs has 3"),
    ("partial: prompt ids missing", chat_reply(prompt=None), "partial token data: prompt_token_ids"),
    ("partial: token_ids missing", chat_reply(token_ids=None), "partial token data: choices[0].token_ids"),
    ("logprob entries not token_id:N", chat_reply(tokens=["a", "b", "c"]), "expected 'token_id:N'"),
    ("malformed token id", chat_reply(tokens=["token_id:x", "token_id:6", "token_id:7"]), "malformed"),
    ("logprob is null", chat_reply(lps=(None, -1.0, -2.0)), "logprob None"),
    ("prompt ids not integers", chat_reply(prompt=[1, "2"]), "prompt_token_ids must be a list"),
    ("no logprobs at all", {"choices": [{"index": 0, "logprobs": None}]}, "no logprobs"),
    ("two choices", {"choices": [{"index": 0}, {"index": 1}]}, "exactly one choice"),
]


@pytest.mark.parametrize("reply,fragment", [c[1:] for c in BAD_CHAT], ids=[c[0] for c in BAD_CHAT])
def test_chat_capture_refuses_bad_data(reply, fragment):
    with pytest.raises(ProtocolError) as info:
        capture_chat_tokens(reply)
    assert fragment in str(info.value)


BAD_COMPLETION = [
    ("partial: prompt ids missing", completion_reply(prompt=None), "choices[0].prompt_token_ids"),
    ("ids disagree", completion_reply(token_ids=[5, 7]), "disagrees"),
    ("lengths differ", {"choices": [{"logprobs": {"tokens": ["token_id:1"], "token_logprobs": [-1.0, -2.0]}}]}, "token_logprobs 2"),
]


@pytest.mark.parametrize("reply,fragment", [c[1:] for c in BAD_COMPLETION], ids=[c[0] for c in BAD_COMPLETION])
def test_completion_capture_refuses_bad_data(reply, fragment):
    with pytest.raises(ProtocolError) as info:
        capture_completion_tokens(reply)
    assert fragment in str(info.value)


CONTINUITY = [
    ("single call", [([1, 2], [3])], True, None),
    ("continuous over three calls", [([1, 2], [3]), ([1, 2, 3, 4], [5]), ([1, 2, 3, 4, 5, 6], [7])], True, None),
    ("template rewrote history", [([1, 2], [3, 9]), ([1, 2, 3, 4, 5], [6])], False,
     {"call": 1, "position": 3, "expected": 9, "actual": 4}),
    ("prompt shorter than history", [([1, 2], [3]), ([1, 2], [4])], False,
     {"call": 1, "position": 2, "expected": 3, "actual": None}),
    ("first break is kept", [([1], [2]), ([1, 5], [6]), ([7], [8])], False,
     {"call": 1, "position": 1, "expected": 2, "actual": 5}),
]


@pytest.mark.parametrize("calls,continuous,first", [c[1:] for c in CONTINUITY], ids=[c[0] for c in CONTINUITY])
def test_continuity(calls, continuous, first):
    tracker = ContinuityTracker()
    for prompt, gen in calls:
        tracker.observe(prompt, gen)
    summary = tracker.summary()
    assert summary["continuous"] is continuous
    assert summary["first_mismatch"] == first
    assert summary["checked_calls"] == len(calls) - 1


def test_first_mismatch():
    assert first_mismatch([1, 2], [1, 2, 3]) is None
    assert first_mismatch([1, 2], [1, 3]) == 1
    assert first_mismatch([], [4]) is None
    assert first_mismatch([1, 2, 3], [1, 2]) == 2  # actual ends early
    assert first_mismatch([1, 2, 3], (1, 2, 3, 4)) is None  # any sequence types
    assert first_mismatch((5, 6), [5, 7, 8]) == 1
    long = list(range(10_000))
    assert first_mismatch(long, long + [1]) is None
    assert first_mismatch(long, long[:9_999] + [0]) == 9_999
