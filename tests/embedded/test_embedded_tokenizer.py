"""Unit tests: the byte-level tokenizer."""

import pytest

from gym_rollouts.embedded.tokenizer import (
    EOS_ID,
    IM_START_ID,
    SPECIAL_IDS,
    SPECIAL_TOKENS,
    VOCAB_SIZE,
    ByteTokenizer,
)

tok = ByteTokenizer()


@pytest.mark.parametrize(
    "text",
    ["", "hello", "héllo wörld ✓ 日本", "<|im_start|>user\nhi<|im_end|>\n", "a < b > c", "<think>x</think>"],
)
def test_roundtrip(text):
    assert tok.decode(tok.encode(text)) == text


def test_bytes_are_ids_below_256():
    assert tok.encode("Az") == [65, 122]
    assert tok.encode("é") == list("é".encode())


def test_special_tokens_have_fixed_ids_above_bytes():
    assert [SPECIAL_IDS[s] for s in SPECIAL_TOKENS] == list(range(256, 256 + len(SPECIAL_TOKENS)))
    assert VOCAB_SIZE == 256 + len(SPECIAL_TOKENS)
    assert tok.encode("<|im_start|>") == [IM_START_ID]
    assert tok.encode("a<|im_end|>b") == [97, EOS_ID, 98]
    assert tok.eos_token_id == EOS_ID == SPECIAL_IDS["<|im_end|>"]
    assert tok.encode("<tool_call><think></think></tool_call>") == [
        SPECIAL_IDS["<tool_call>"], SPECIAL_IDS["<think>"], SPECIAL_IDS["</think>"], SPECIAL_IDS["</tool_call>"]]


@pytest.mark.parametrize(
    "a,b",
    [("hello ", "world"), ("<|im_start|>user\n", "hi<|im_end|>\n"), ("x<tool_call>", "\n{}\n</tool_call>"),
     ("日本", "語"), ("", "abc")],
)
def test_concatenation_is_prefix_stable(a, b):
    assert tok.encode(a + b) == tok.encode(a) + tok.encode(b)


def test_token_strings():
    assert tok.token_str(65) == "A"
    assert tok.token_str(EOS_ID) == "<|im_end|>"
    assert tok.token_id_str(65) == "token_id:65"
    assert tok.token_bytes(0xC3) == b"\xc3"
    assert tok.token_strs(tok.encode("ab")) == ["a", "b"]


def test_decode_skip_special_and_partial_utf8():
    assert tok.decode(tok.encode("a<|im_end|>"), skip_special_tokens=True) == "a"
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"
    assert tok.is_valid_id(VOCAB_SIZE - 1) and not tok.is_valid_id(VOCAB_SIZE)
