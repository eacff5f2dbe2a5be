"""Answer extraction: which part of the model's final text is its answer.

Verifiers that score an answer with a library (reasoning-gym's ``score_answer``, math-verify) first
cut the answer out of the model's final assistant text. ``answer_format`` names the rule:

- ``answer_tag``: the last ``<answer>...</answer>`` (reasoning-gym's prompts ask for it);
- ``boxed``: the content of the last ``\\boxed{...}`` (braces balanced);
- ``answer_is``: what follows the last "answer is" / "answer:" on its line (one final period dropped);
- ``last_line``: the last non-empty line;
- ``full``: the whole text (stripped): the library does its own extraction;
- ``pattern``: the first group of the last match of ``answer_pattern`` (a Python regex);
- ``auto``: the first of ``answer_tag``, ``boxed``, ``answer_is``, ``last_line`` that finds something.

``extract`` returns None when the rule finds nothing (the library then scores "no answer").
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

from gym_rollouts.errors import ConfigError

_ANSWER_TAG = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\s*\{")
_ANSWER_IS = re.compile(r"(?:answer is|answer:)[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)


def answer_tag(text: str) -> str | None:
    matches = _ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` whose braces close."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:pos].strip()
    return None


def answer_is(text: str) -> str | None:
    matches = _ANSWER_IS.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip()
    if answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    return answer or None


def last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def full(text: str) -> str | None:
    return text.strip() or None


_RULES: dict[str, Callable[[str], str | None]] = {
    "answer_tag": answer_tag, "boxed": boxed, "answer_is": answer_is, "last_line": last_line, "full": full,
}
_AUTO_ORDER = ("answer_tag", "boxed", "answer_is", "last_line")
FORMATS = ("auto", *_RULES, "pattern")


@dataclass(frozen=True)
class AnswerExtractor:
    """One extraction rule (see module doc), checked when it is made."""

    answer_format: str = "auto"
    answer_pattern: str | None = None
    where: str = "resource.params"

    def __post_init__(self) -> None:
        if self.answer_format not in FORMATS:
            close = difflib.get_close_matches(str(self.answer_format), FORMATS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{self.where}.answer_format: unknown rule {self.answer_format!r}.{hint} "
                              f"Choose one of: {', '.join(FORMATS)}")
        if (self.answer_format == "pattern") != (self.answer_pattern is not None):
            raise ConfigError(f"{self.where}: answer_pattern goes with answer_format=pattern (a regex whose first "
                              f"group is the answer); got answer_format={self.answer_format!r}, "
                              f"answer_pattern={self.answer_pattern!r}")
        if self.answer_pattern is not None:
            try:
                compiled = re.compile(self.answer_pattern)
            except re.error as exc:
                raise ConfigError(f"{self.where}.answer_pattern {self.answer_pattern!r} is not a valid regex: "
                                  f"{exc}") from None
            if compiled.groups < 1:
                raise ConfigError(f"{self.where}.answer_pattern {self.answer_pattern!r} has no group: put the "
                                  f"answer in parentheses, e.g. 'Final: (.+)'")

    def extract(self, text: str) -> str | None:
        """The answer in ``text`` by this rule (None: nothing found)."""
        if self.answer_format == "pattern":
            matches = list(re.finditer(str(self.answer_pattern), text))
            found = matches[-1].group(1) if matches else None
            return found.strip() if found is not None and found.strip() else None
        if self.answer_format == "auto":
            for name in _AUTO_ORDER:
                found = _RULES[name](text)
                if found is not None:
                    return found
            return None
        return _RULES[self.answer_format](text)
