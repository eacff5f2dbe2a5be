"""One-line notices from composing a config: which ``env.yaml`` was loaded, which NeMo Gym keys
were accepted as not applicable, which NeMo Gym model blocks are not used.

Composition (config/compose.py, config/nemo_compat.py) adds to a ``Notices`` the caller owns;
nothing here prints. ``cli/app.py`` prints each line once on stderr (``note: ...``) before the
task runs; ``compose_plain(..., notices=Notices())`` exposes the same lines to tests and tools.
A ``Notices`` is created per composition: there is no shared state between runs.
"""

from __future__ import annotations

from typing import Iterator


class Notices:
    """An ordered collection of one-line messages; adding a message twice keeps the first."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, message: str) -> None:
        line = " ".join(str(message).split())  # always one line, whatever the caller built
        if line and line not in self._lines:
            self._lines.append(line)

    def extend(self, messages: "Notices | list[str] | tuple[str, ...]") -> None:
        for message in messages:
            self.add(message)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._lines))

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, message: object) -> bool:
        return message in self._lines

    def __repr__(self) -> str:
        return f"Notices({self._lines!r})"


def unseen(notices: Notices, printed: set[str]) -> list[str]:
    """The lines of ``notices`` not in ``printed`` (which is updated): for a caller that composes
    several times (a multirun) and must show each line once."""
    fresh = [line for line in notices if line not in printed]
    printed.update(fresh)
    return fresh
