"""Deterministic pseudo log-probabilities and vLLM's two logprobs response shapes.

logprob(token, position) is a lookup in a table of negative floats built once per process from
a fixed linear congruential sequence, so the same generation always gets the same numbers.
Top alternatives are the sampled token first (it is the most likely) followed by neighbouring
byte ids with strictly lower logprobs.
"""

from __future__ import annotations

from typing import Sequence

from .tokenizer import VOCAB_SIZE, ByteTokenizer

_TABLE_SIZE = 1024
_MASK = _TABLE_SIZE - 1


def _build_table() -> tuple[float, ...]:
    x, out = 12345, []
    for _ in range(_TABLE_SIZE):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append(-round(0.001 + 3.999 * (x / 0x7FFFFFFF) ** 3, 6))
    return tuple(out)


_TABLE = _build_table()


def logprob(token_id: int, position: int) -> float:
    return _TABLE[(token_id * 7919 + position * 104729) & _MASK]


def _alternatives(token_id: int, lp: float, n: int) -> list[tuple[int, float]]:
    """n (id, logprob) pairs, best first, starting with the sampled token."""
    out = [(token_id, lp)]
    alt = token_id
    for k in range(1, n):
        alt = (alt + 1) % VOCAB_SIZE
        if alt == token_id:
            alt = (alt + 1) % VOCAB_SIZE
        out.append((alt, round(lp - 0.75 * k, 6)))
    return out


class LogprobBuilder:
    """Builds chat / completions logprobs payloads for generated token ids."""

    def __init__(self, tokenizer: ByteTokenizer) -> None:
        self._tok = tokenizer
        strs = [tokenizer.token_str(i) for i in range(VOCAB_SIZE)]
        self._str_bytes = [list(tokenizer.token_bytes(i)) for i in range(VOCAB_SIZE)]
        self._ids = [tokenizer.token_id_str(i) for i in range(VOCAB_SIZE)]
        self._id_bytes = [list(s.encode()) for s in self._ids]
        self._strs = strs

    def _entry(self, token_id: int, lp: float, as_ids: bool) -> dict:
        if as_ids:
            return {"token": self._ids[token_id], "logprob": lp, "bytes": self._id_bytes[token_id]}
        return {"token": self._strs[token_id], "logprob": lp, "bytes": self._str_bytes[token_id]}

    def chat(self, ids: Sequence[int], top_n: int, as_ids: bool) -> dict:
        """`{"content": [{"token","logprob","bytes","top_logprobs"}]}` as vLLM's chat API."""
        content = []
        entry = self._entry
        for pos, tid in enumerate(ids):
            lp = _TABLE[(tid * 7919 + pos * 104729) & _MASK]
            item = entry(tid, lp, as_ids)
            if top_n > 0:
                item["top_logprobs"] = [entry(a, alp, as_ids) for a, alp in _alternatives(tid, lp, top_n)]
            else:
                item["top_logprobs"] = []
            content.append(item)
        return {"content": content}

    def completion(self, ids: Sequence[int], top_n: int, as_ids: bool) -> dict:
        """`{"tokens","token_logprobs","text_offset","top_logprobs"}` as vLLM's completions API
        (`logprobs: N` -> the sampled token plus up to N alternatives per position)."""
        names = self._ids if as_ids else self._strs
        tokens, lps, offsets, tops = [], [], [], []
        offset = 0
        for pos, tid in enumerate(ids):
            lp = _TABLE[(tid * 7919 + pos * 104729) & _MASK]
            tokens.append(names[tid])
            lps.append(lp)
            offsets.append(offset)
            offset += len(self._strs[tid])
            tops.append({names[a]: alp for a, alp in _alternatives(tid, lp, max(top_n, 1))})
        return {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": tops}
