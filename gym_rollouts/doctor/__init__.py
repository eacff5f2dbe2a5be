"""``doctor``: the vLLM troubleshooting guide, automated (see docs/doctor.md).

A thin async prober (``probe``) sends a handful of tiny requests to every server of the run's
config and records what it saw (``facts``); the checks (``check_server``, ``check_features``,
``check_fleet``) are pure functions from those facts to ``Finding``s with evidence and the exact
fix; ``runner`` ties them together into a ``Report``. Printing happens in ``cli/doctor.py`` only.
"""

from gym_rollouts.doctor.findings import CHECKS, Finding, Report, Status
from gym_rollouts.doctor.runner import build_report, run_doctor

__all__ = ["CHECKS", "Finding", "Report", "Status", "build_report", "run_doctor"]
