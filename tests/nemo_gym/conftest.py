"""The NeMo Gym tier: tests against real NeMo Gym servers started with NeMo Gym's ``ng_run``
(see docs/nemo_gym_tier.md).

Every test in this folder gets the ``nemo_gym`` marker (deselect with ``-m "not nemo_gym"``).

Where the stack comes from:
  - ``GYM_ROLLOUTS_NEMO_GYM_HEAD_URL`` set: the stack behind that running head server (found through
    its ``/server_instances`` and ``/global_config_dict_yaml``); nothing is started or stopped, and
    tests needing an environment it does not run skip;
  - else, when ``.venv-nemo-gym`` exists (``bash scripts/setup_nemo_gym.sh``): one stack of
    ``DEFAULT_ENVS`` (example_single_tool_call, mcqa, example_session_state_mgmt, each with its
    ``<env>_simple_agent``, plus a ``policy_model`` nobody calls) started once per test session on
    free loopback ports (head port never 11000) when a test first needs it, and stopped right after
    the last test of this folder that needs it; that teardown fails if anything of it is left
    running or answering;
  - else the tests skip with a reason saying how to set the tier up, except under CI (``CI`` set
    and not "0"/"false"), where they fail: CI must run this tier.

Fixtures (session-scoped):
  nemo_gym_stack   a ``gym_rollouts.testing.nemo_gym.NemoGymStack`` (head_url, env_url(env),
                   agent_name(env), endpoints, example_jsonl(env), site_packages)
  nemo_gym_env     ``nemo_gym_env("mcqa")`` -> that environment's EnvEndpoint (skips if absent)
"""

from __future__ import annotations

import os
import sys
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
try:
    from gym_rollouts.testing import nemo_gym as ng
except ImportError:  # pytest started without the repo root on sys.path
    sys.path.insert(0, str(REPO))
    from gym_rollouts.testing import nemo_gym as ng

STARTUP_TIMEOUT = float(os.environ.get("GYM_ROLLOUTS_NEMO_GYM_STARTUP_TIMEOUT", "420"))


def _ours(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(HERE)
    except (AttributeError, ValueError):
        return False


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if _ours(item):
            item.add_marker(pytest.mark.nemo_gym)


def _truthy(value: str | None) -> bool:
    return bool(value) and value.strip().lower() not in ("0", "false", "no", "off")


def _unavailable(reason: str) -> None:
    if _truthy(os.environ.get("CI")):
        pytest.fail(f"NeMo Gym tier not set up under CI: {reason}", pytrace=False)
    pytest.skip(f"NeMo Gym tier not set up: {reason}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2.0):
            return True
    except OSError:
        return False


@dataclass
class _Tier:
    """The session's stack (started on first use, stopped after the last test needing it)."""

    stack: ng.NemoGymStack | None = None
    report: dict = field(default_factory=dict)


_TIER_KEY = pytest.StashKey[_Tier]()


def _tier(config) -> _Tier:
    if _TIER_KEY not in config.stash:
        config.stash[_TIER_KEY] = _Tier()
    return config.stash[_TIER_KEY]


def _stop(tier: _Tier) -> None:
    stack, tier.stack = tier.stack, None
    if stack is None or stack.process is None:
        return
    tier.report["rss"] = max(tier.report["rss"], stack.rss_bytes())
    stack.stop()
    tier.report["stop_s"] = stack.stop_s
    left, answering = stack.leftovers(), [u for u in stack.urls if _answers(u)]
    assert not left and not answering, (
        f"the stopped NeMo Gym stack left processes {left} and servers {answering} (log {stack.log_path})")


@pytest.fixture(scope="session")
def nemo_gym_stack(request) -> ng.NemoGymStack:
    tier = _tier(request.config)
    head = os.environ.get(ng.HEAD_URL_ENV)
    if head:
        try:
            return ng.connect_stack(head)
        except (ng.NemoGymStartError, OSError) as e:
            pytest.fail(f"{ng.HEAD_URL_ENV}={head}: {e}", pytrace=False)
    missing = ng.tier_missing()
    if missing:
        _unavailable(missing)
    try:
        tier.stack = ng.start_stack(ng.DEFAULT_ENVS, startup_timeout=STARTUP_TIMEOUT, label="pytest")
    except ng.NemoGymStartError as e:
        pytest.fail(f"the NeMo Gym stack did not start: {e}", pytrace=False)
    tier.report.update(startup_s=tier.stack.startup_s, rss=tier.stack.rss_bytes(), log=tier.stack.log_path)
    return tier.stack


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    # Stop the stack right after the last test of this folder that needs it (it holds ~3.5 GB and
    # Ray keeps a core busy now and then: the rest of the suite should not pay for it).
    tier = item.config.stash.get(_TIER_KEY, None)
    if tier is None or tier.stack is None or not _ours(item):
        return
    items = item.session.items
    if not any(_ours(i) and "nemo_gym_stack" in i.fixturenames for i in items[items.index(item) + 1:]):
        _stop(tier)


def pytest_sessionfinish(session, exitstatus):
    tier = session.config.stash.get(_TIER_KEY, None)
    if tier is not None:
        try:
            _stop(tier)
        except AssertionError as e:  # an interrupted session: say so, do not crash pytest
            warnings.warn(str(e), stacklevel=1)


@pytest.fixture(scope="session")
def nemo_gym_env(nemo_gym_stack):
    def get(env: str) -> ng.EnvEndpoint:
        if env not in nemo_gym_stack.endpoints:
            pytest.skip(f"the NeMo Gym stack at {nemo_gym_stack.head_url} runs no {env!r} "
                        f"(it runs {sorted(nemo_gym_stack.endpoints)})")
        return nemo_gym_stack.endpoints[env]

    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tier = config.stash.get(_TIER_KEY, None)
    report = tier.report if tier else {}
    if "startup_s" not in report:
        return
    stop = report.get("stop_s")
    terminalreporter.write_line(
        f"NeMo Gym stack: launch to healthy {report['startup_s']:.1f} s, stop "
        f"{'?' if stop is None else f'{stop:.1f}'} s, RSS {report['rss'] / 2**30:.2f} GiB (log {report['log']})")
