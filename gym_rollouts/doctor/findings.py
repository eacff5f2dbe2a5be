"""What ``doctor`` reports: one ``Finding`` per check (and per server where it applies), and the
``Report`` that holds them, decides the exit code and renders the machine-readable form.

Statuses: PASS (fine), WARN (works, but slower or not what you probably want), FAIL (collect will
fail or produce wrong data), SKIP (the check does not apply, or could not run: the evidence says
why). Only FAIL makes the exit code non-zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# The checks, in the order they are reported (numbers as in docs/doctor.md).
CHECKS = ("reachability", "base_url", "model", "context", "tools", "reasoning", "training",
          "throughput", "fleet", "environments")


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


_SEVERITY = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.SKIP)


@dataclass(frozen=True)
class Finding:
    """The outcome of one check for one server (``server`` None: fleet- or config-wide)."""

    check: str
    status: Status
    summary: str
    evidence: str = ""
    fix: str | None = None
    server: str | None = None

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}")

    @property
    def number(self) -> int:
        return CHECKS.index(self.check) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "number": self.number, "status": self.status.value,
                "server": self.server, "summary": self.summary, "evidence": self.evidence,
                "fix": self.fix}


@dataclass
class Report:
    """Every finding of one ``doctor`` run plus what was checked."""

    findings: list[Finding] = field(default_factory=list)
    servers: tuple[str, ...] = ()
    model: str | None = None
    embedded: bool = False
    notes: list[str] = field(default_factory=list)

    def ordered(self) -> list[Finding]:
        order = {s: i for i, s in enumerate(self.servers)}
        return sorted(self.findings, key=lambda f: (f.number, f.server is None,
                                                    order.get(f.server or "", len(order))))

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.status is s) for s in Status}

    @property
    def exit_code(self) -> int:
        return 1 if any(f.status is Status.FAIL for f in self.findings) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "exit_code": self.exit_code, "counts": self.counts(),
                "servers": list(self.servers), "model": self.model, "embedded_backend": self.embedded,
                "notes": list(self.notes), "findings": [f.as_dict() for f in self.ordered()]}
