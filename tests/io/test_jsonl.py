"""Torn-tail repair and line counting of append-only JSONL files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gym_rollouts.io.jsonl import count_lines, iter_json_lines, repair_tail

GOOD = b'{"a": 1}\n{"a": 2}\n'


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (GOOD, GOOD),                                   # clean: untouched
        (GOOD + b'{"a": 3, "b": "to', GOOD),            # torn: no trailing newline
        (GOOD + b'{"a": 3', GOOD),
        (GOOD + b"\x00\x00\x00\x00", GOOD),             # power loss: NULs, no newline
        (GOOD + b"\x00\x00\x00\n", GOOD),               # ... NULs ending in a newline
        (GOOD + b'{"a": 3}garbage\n', GOOD),            # complete-looking but not JSON
        (b'{"a": 1', b""),                              # the only line is torn
        (b"", b""),
        (GOOD + b"\n", GOOD + b"\n"),                   # a trailing blank line is harmless
    ],
)
def test_repair_tail(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    repair = repair_tail(path)
    assert path.read_bytes() == expected
    assert (repair is None) == (content == expected)
    if repair is not None:
        assert repair.removed_bytes == len(content) - len(expected)


def test_repair_tail_long_line_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gym_rollouts.io.jsonl as jsonl

    monkeypatch.setattr(jsonl, "CHUNK", 7)  # force the backwards scan over several chunks
    path = tmp_path / "f.jsonl"
    big = b'{"text": "' + b"x" * 100 + b'"}\n'
    path.write_bytes(big + big + big[:50])
    assert repair_tail(path) is not None
    assert path.read_bytes() == big + big


def test_repair_tail_missing_file(tmp_path: Path) -> None:
    assert repair_tail(tmp_path / "absent.jsonl") is None


def test_count_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    assert count_lines(path) == 0
    path.write_bytes(GOOD * 3 + b'{"torn')
    assert count_lines(path) == 6


def test_iter_json_lines_names_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": 1}\n\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=r"f\.jsonl:3: not valid JSON"):
        list(iter_json_lines(path))
