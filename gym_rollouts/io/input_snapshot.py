"""What the input scan read, so that every later pass over the input proves it reads the same bytes.

The scan's first pass (``InputSnapshot.record``) notes the file's identity (device, inode, size,
modification time) and a 16-byte digest (blake2b) of each block of the lines it consumed. Every
later pass, the scan's own and the job stream on the reader thread, reads through
``InputSnapshot.verified``: a block's lines are handed out only once the block's digest matches
the recorded one, so nothing is ever made from changed content. A mismatch (the file rewritten,
truncated, appended to, replaced by a different file, removed) raises ``InputChangedError``
saying what changed and from which line; the same bytes under a new inode or modification time
(an editor's save, ``touch``) are no change. A file replaced after a pass opened it does not
affect that pass: it reads the file it opened.

A pass consumes the first ``limit`` non-blank lines (blank lines among them included, none after
the last); blocks close once they hold ``block_bytes``, chosen from the file's size (16 KiB up to
4 MiB: about 4096 blocks for files up to 16 GB), so a pass holds one block at a time and the scan
keeps 16 bytes per block (64 KiB up to 16 GB of input).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from gym_rollouts.errors import InputChangedError

DIGEST_BYTES = 16
MIN_BLOCK_BYTES = 16 * 1024
MAX_BLOCK_BYTES = 4 * 1024 * 1024
TARGET_BLOCKS = 4096
Line = tuple[int, bytes]  # (line number, the raw line)


def block_bytes_for(size: int) -> int:
    """The block size for a file of ``size`` bytes (see module doc)."""
    return max(MIN_BLOCK_BYTES, min(MAX_BLOCK_BYTES, size // TARGET_BLOCKS))


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class _Block:
    lines: list[Line]  # the non-blank lines
    digest: bytes  # of every raw line of the block, blank ones included
    first_line: int
    raw_lines: int


def _blocks(fh: BinaryIO, limit: int | None, block_bytes: int) -> Iterator[_Block]:
    """The blocks of the lines one pass consumes (see module doc)."""
    used, first, size = 0, 1, 0
    lines: list[Line] = []
    raw = 0
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for line_no, line in enumerate(fh, start=1):
        if limit is not None and used >= limit:
            break
        digest.update(line)
        size += len(line)
        raw += 1
        if line.strip():
            used += 1
            lines.append((line_no, line))
        if size >= block_bytes:
            yield _Block(lines, digest.digest(), first, raw)
            lines, raw, size, first = [], 0, 0, line_no + 1
            digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    if raw:
        yield _Block(lines, digest.digest(), first, raw)


@dataclass
class InputSnapshot:
    """The identity and block digests of one input as its first pass read it (see module doc)."""

    path: Path
    limit: int | None = None
    identity: FileIdentity | None = None
    block_bytes: int = MIN_BLOCK_BYTES
    digests: bytearray = field(default_factory=bytearray)
    raw_lines: int = 0  # lines consumed, blank ones included
    blank_lines: int = 0
    recorded: bool = False

    @property
    def blocks(self) -> int:
        return len(self.digests) // DIGEST_BYTES

    def record(self) -> Iterator[Line]:
        """The first pass: the used lines, recording identity and digests as they are read
        (complete once the iterator is exhausted)."""
        with self.path.open("rb") as fh:
            self.identity = FileIdentity.of(os.fstat(fh.fileno()))
            self.block_bytes = block_bytes_for(self.identity.size)
            for block in _blocks(fh, self.limit, self.block_bytes):
                self.digests += block.digest
                self.raw_lines += block.raw_lines
                self.blank_lines += block.raw_lines - len(block.lines)
                yield from block.lines
        self.recorded = True

    def verified(self, advice: str) -> Iterator[Line]:
        """A later pass: the same used lines, each block handed out only after its digest matched
        the recorded one; ``InputChangedError`` (ending with ``advice``) at the first difference."""
        if not self.recorded:
            raise RuntimeError("InputSnapshot.verified() before record() was read to its end")
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise InputChangedError(f"input changed: {self.path} can no longer be read "
                                    f"({exc.strerror or exc}). {advice}") from None
        with fh:
            index, next_line = 0, 1
            for block in _blocks(fh, self.limit, self.block_bytes):
                start = index * DIGEST_BYTES
                if index >= self.blocks or self.digests[start:start + DIGEST_BYTES] != block.digest:
                    raise self._changed(block.first_line, advice)
                index, next_line = index + 1, block.first_line + block.raw_lines
                yield from block.lines
            if index != self.blocks:  # the file ends early, exactly at a block's end
                raise self._changed(next_line, advice)

    def _changed(self, line_no: int, advice: str) -> InputChangedError:
        return InputChangedError(f"input changed: {self.path} {self.describe_change()} since collect "
                                 f"scanned it (the lines from {line_no} on differ from what the scan read). "
                                 f"{advice}")

    def describe_change(self) -> str:
        """What the file's metadata says about the change (its content differs in any case)."""
        was = self.identity
        try:
            now = FileIdentity.of(os.stat(self.path))
        except OSError:
            return "was removed"
        if was is None:
            return "changed"
        what = []
        if (now.device, now.inode) != (was.device, was.inode):
            what.append("was replaced by another file")
        if now.size < was.size:
            what.append(f"was truncated ({was.size} -> {now.size} bytes)")
        elif now.size > was.size:
            what.append(f"grew ({was.size} -> {now.size} bytes)")
        else:
            what.append(f"was rewritten (same size, {now.size} bytes)")
        if now.mtime_ns != was.mtime_ns:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now.mtime_ns / 1e9))
            what.append(f"modified {stamp}")
        return ", ".join(what)
