"""The embedded model's tokenizer: byte-level, deterministic, prefix-stable.

Ids 0..255 are the UTF-8 bytes; the special tokens below take ids 256 and up (the media
placeholders `<|image|>` / `<|audio|>` come last, so the older ids are unchanged). Text is split on
special-token strings first, then each plain piece becomes its bytes. Because there are no
merges, encode(a + b) == encode(a) + encode(b) whenever no special-token string straddles the
boundary: the property the chat-template prefix guarantee rests on.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<tool_response>",
    "</tool_response>",
    "<|image|>",  # one per image part of a chat message (see template.py)
    "<|audio|>",  # one per audio part
)
FIRST_SPECIAL_ID = 256
SPECIAL_IDS: dict[str, int] = {s: FIRST_SPECIAL_ID + i for i, s in enumerate(SPECIAL_TOKENS)}
ENDOFTEXT_ID = SPECIAL_IDS["<|endoftext|>"]
IM_START_ID = SPECIAL_IDS["<|im_start|>"]
EOS_ID = SPECIAL_IDS["<|im_end|>"]
IMAGE_TOKEN = "<|image|>"
AUDIO_TOKEN = "<|audio|>"
VOCAB_SIZE = FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)

# One compiled splitter; the capturing group keeps the specials in the split output.
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL_TOKENS) + ")")


def _byte_str(b: int) -> str:
    # Printable ASCII shows as itself; any other byte as its own (possibly partial) decoding.
    return bytes([b]).decode("utf-8", errors="replace")


class ByteTokenizer:
    """Stateless byte-level tokenizer with a handful of special tokens (see module doc)."""

    vocab_size = VOCAB_SIZE
    eos_token_id = EOS_ID
    eos_token = "<|im_end|>"

    def __init__(self) -> None:
        self._strs: tuple[str, ...] = tuple(
            [_byte_str(b) for b in range(256)] + list(SPECIAL_TOKENS)
        )
        self._bytes: tuple[bytes, ...] = tuple(
            [bytes([b]) for b in range(256)] + [s.encode() for s in SPECIAL_TOKENS]
        )
        self._id_strs: tuple[str, ...] = tuple(f"token_id:{i}" for i in range(VOCAB_SIZE))

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if "<" not in text:
            return list(text.encode("utf-8"))
        out: list[int] = []
        special = SPECIAL_IDS
        for i, piece in enumerate(_SPLIT.split(text)):
            if i & 1:
                out.append(special[piece])
            elif piece:
                out.extend(piece.encode("utf-8"))
        return out

    def count(self, text: str) -> int:
        return len(self.encode(text))

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        table = self._bytes
        if skip_special_tokens:
            data = b"".join(table[i] for i in ids if i < FIRST_SPECIAL_ID)
        else:
            data = b"".join(table[i] for i in ids)
        return data.decode("utf-8", errors="replace")

    def token_str(self, token_id: int) -> str:
        """The token as text: a special token's string, or the byte's own decoding."""
        return self._strs[token_id]

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def token_id_str(self, token_id: int) -> str:
        """vLLM's `return_tokens_as_token_ids` spelling: `token_id:N`."""
        return self._id_strs[token_id]

    def is_valid_id(self, token_id: object) -> bool:
        return isinstance(token_id, int) and 0 <= token_id < VOCAB_SIZE

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        strs = self._strs
        return [strs[i] for i in ids]
