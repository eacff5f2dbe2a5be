"""Helpers for doctor's tests: the config composed exactly as the console script composes it,
one doctor run against given servers, and finding look-ups."""

from __future__ import annotations

import socket

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import CollectConfig, build_collect_config
from gym_rollouts.doctor import Finding, Report, Status, run_doctor


def doctor_config(*overrides: str) -> CollectConfig:
    """``conf/`` composed with these command-line overrides, then validated (as ``doctor`` does)."""
    return build_collect_config(compose_plain(list(overrides)))


async def doctor_on(urls: list[str] | str, *overrides: str) -> Report:
    """Run doctor against ``urls`` with extra overrides; the report, not the printout."""
    listed = urls if isinstance(urls, list) else [urls]
    return await run_doctor(doctor_config(f"policy_base_url=[{','.join(listed)}]", "doctor.timeout_s=10",
                                          *overrides))


def only(report: Report, check: str, server: str | None = None) -> Finding:
    """The one finding of ``check`` for ``server`` (None: the fleet-wide one)."""
    found = [f for f in report.findings if f.check == check and f.server == server]
    assert len(found) == 1, (check, server, report.findings)
    return found[0]


def failing(report: Report) -> list[tuple[str, str | None]]:
    return [(f.check, f.server) for f in report.findings if f.status is Status.FAIL]


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
