"""Tier 3: tests against a real vLLM server (see docs/real_vllm.md).

Every test in this folder gets the ``real_vllm`` marker (deselect with ``-m "not real_vllm"``).

Where the servers come from:
  - ``GYM_ROLLOUTS_VLLM_URL`` set: that running server (e.g. a GPU vLLM; with or without ``/v1``),
    served name from ``GYM_ROLLOUTS_VLLM_MODEL`` or its ``/v1/models``. The optional
    ``GYM_ROLLOUTS_VLLM_REASONING_URL`` / ``GYM_ROLLOUTS_VLLM_NO_TOOLS_URL`` name the servers for
    ``real_vllm_reasoning`` / ``real_vllm_no_tools``; tests needing one that is not given skip.
  - else, when ``.venv-vllm`` and ``.cache/tiny-model`` exist (``bash scripts/setup_real_vllm.sh``):
    servers started here on 127.0.0.1, only those the selected tests need, at most two alive at
    a time, the next one starting while the tests of another run (see ServerPool);
  - else the tests skip with a reason saying how to set the tier up, except under CI
    (``CI`` set and not "0"/"false"), where they fail: CI must run this tier.

Fixtures (session-scoped; the URLs are base URLs ending in ``/v1``):
  real_vllm            the recommended setup: ``--enable-auto-tool-choice --tool-call-parser
                       hermes``, no reasoning parser; started with ``VLLM_SERVER_DEV_MODE=1``
                       (its /pause, /resume, /weight_info: tests/real_vllm/test_pause_real.py)
  real_vllm_reasoning  hermes + ``--reasoning-parser deepseek_r1``, and structured outputs enforced
                       inside ``<think>`` too (``enable_in_reasoning``), so tests can force it
  real_vllm_no_tools   no tool parser at all
  real_vllm_model      the served model name of ``real_vllm``
  real_vllm_local      True when the servers are the local tiny model (tiny-specific facts)
  vllm_pool            the ServerPool (None with external servers)
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
try:
    from gym_rollouts.testing import real_vllm as rv
except ImportError:  # pytest started without the repo root on sys.path
    sys.path.insert(0, str(REPO))
    from gym_rollouts.testing import real_vllm as rv

LOG_DIR = REPO / ".cache" / "real_vllm_logs"
STARTUP_TIMEOUT = float(os.environ.get("GYM_ROLLOUTS_VLLM_STARTUP_TIMEOUT", "420"))


@dataclass(frozen=True)
class ServerSpec:
    """One kind of server this tier can start."""

    fixture: str  # the fixture that hands it out
    tool_parser: str | None
    reasoning_parser: str | None = None
    extra_args: tuple[str, ...] = ()
    env_url: str = ""  # env var naming an already-running server of this kind
    env: tuple[tuple[str, str], ...] = ()  # environment of a server started here


SPECS = {
    "real_vllm": ServerSpec("real_vllm", "hermes", env_url="GYM_ROLLOUTS_VLLM_URL",
                            env=(("VLLM_SERVER_DEV_MODE", "1"),)),  # adds routes only (the pause tests)
    "real_vllm_reasoning": ServerSpec(
        "real_vllm_reasoning", "hermes", "deepseek_r1",
        ("--structured-outputs-config", '{"enable_in_reasoning": true}'),
        env_url="GYM_ROLLOUTS_VLLM_REASONING_URL",
    ),
    "real_vllm_no_tools": ServerSpec("real_vllm_no_tools", None, env_url="GYM_ROLLOUTS_VLLM_NO_TOOLS_URL"),
}


def log_path(kind: str) -> Path:
    """``.cache/real_vllm_logs/<kind>-<pytest pid>.log``: sessions running side by side (several
    checkouts' worth of pytest on one machine) do not share a log; logs older than a day go."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        try:
            if time.time() - old.stat().st_mtime > 86400:
                old.unlink()
        except OSError:
            pass
    return LOG_DIR / f"{kind}-{os.getpid()}.log"


def _truthy(value: str | None) -> bool:
    return bool(value) and value.strip().lower() not in ("0", "false", "no", "off")


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


@dataclass
class ServerPool:
    """Starts the servers the tests need, ahead of time, keeping at most ``max_alive`` running.

    ``plan(upcoming)`` is called before each test with the server kinds of the remaining tests,
    in run order: servers no remaining test needs are stopped, and the first ``max_alive``
    distinct kinds are launched (without waiting) so that one server's start-up overlaps the
    tests of another. ``get(kind)`` waits for that server to be healthy. Tests are ordered so
    that each kind's tests are contiguous (see pytest_collection_modifyitems): each server
    starts once. Start-ups are CPU-bound imports, so two side by side on 2 cores cost about as
    much as one."""

    max_alive: int = 2
    servers: dict[str, rv.VLLMServer] = field(default_factory=dict)
    startup_s: dict[str, list[float]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)  # not launched ahead of time again

    def _cores(self) -> dict[str, str]:
        if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
            return {}
        try:
            cores = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return {}
        if len(cores) < 2:
            return {}
        # Two servers side by side compute on different cores (vLLM's "auto" binds every
        # server to the same first core).
        others = {s.options.get("core") for s in self.servers.values()}
        core = next((c for c in cores if str(c) not in others), cores[0])
        return {"VLLM_CPU_OMP_THREADS_BIND": str(core)}

    def launch(self, kind: str) -> rv.VLLMServer:
        server = self.servers.get(kind)
        if server is not None:
            return server
        if len(self.servers) >= self.max_alive:
            warnings.warn(f"starting {kind} with {sorted(self.servers)} still alive", stacklevel=2)
        spec = SPECS[kind]
        log = log_path(kind)
        env = {**dict(spec.env), **self._cores()}
        server = rv.launch_vllm(
            tool_parser=spec.tool_parser, reasoning_parser=spec.reasoning_parser,
            extra_args=spec.extra_args, log_path=log, env=env,
        )
        server.options["core"] = env.get("VLLM_CPU_OMP_THREADS_BIND")
        self.servers[kind] = server
        return server

    def get(self, kind: str) -> rv.VLLMServer:
        server = self.launch(kind)
        if server.startup_s is None:
            try:
                server.wait_healthy(STARTUP_TIMEOUT)
            except rv.VLLMStartError:
                self.servers.pop(kind, None)
                self.failed.add(kind)
                raise
            self.startup_s.setdefault(kind, []).append(server.startup_s)
        elif not server.alive():
            self.servers.pop(kind)
            raise rv.VLLMStartError(f"the {kind} server died; log ends with:\n{server.log_tail()}")
        return server

    def plan(self, upcoming: list[set[str]]) -> None:
        needed = set().union(*upcoming) if upcoming else set()
        for kind in list(self.servers):
            if kind not in needed:
                self.stop(kind)
        window: list[str] = []
        for kinds in upcoming:
            for kind in sorted(kinds, key=ORDER.index):
                if kind not in window:
                    window.append(kind)
        for kind in window:
            if len(self.servers) >= self.max_alive:
                break
            if kind not in self.servers and kind not in self.failed:
                try:
                    self.launch(kind)
                except rv.VLLMStartError:
                    self.failed.add(kind)  # get() reports it to the test that needs it

    def stop(self, kind: str) -> None:
        server = self.servers.pop(kind, None)
        if server is not None:
            server.stop()

    def close(self) -> None:
        for kind in list(self.servers):
            self.stop(kind)


# --- collection: marker, grouping ---------------------------------------------------------------

# Run order of the groups: the no-tools tests first (their server starts next to the main one),
# then the main server's own tests (the reasoning server starts meanwhile), then the reasoning ones.
ORDER = ["real_vllm_no_tools", "real_vllm", "real_vllm_reasoning"]


def _ours(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(HERE)
    except (AttributeError, ValueError):
        return False


def _kinds(item: pytest.Item) -> set[str]:
    return {n for n in getattr(item, "fixturenames", ()) if n in SPECS}


def _group(item: pytest.Item) -> int:
    kinds = _kinds(item)
    if "real_vllm_no_tools" in kinds:
        return 0
    if "real_vllm_reasoning" in kinds:
        return 2
    return 1


def pytest_collection_modifyitems(session, config, items):
    ours = [i for i, item in enumerate(items) if _ours(item)]
    for i in ours:
        items[i].add_marker(pytest.mark.real_vllm)
    reordered = sorted((items[i] for i in ours), key=_group)  # stable within a group
    for i, item in zip(ours, reordered):
        items[i] = item


_POOL_KEY = pytest.StashKey[ServerPool]()


def _local_pool(config) -> ServerPool | None:
    """The session's pool: None with external servers or when the tier is not set up."""
    if os.environ.get("GYM_ROLLOUTS_VLLM_URL") or rv.tier_missing():
        return None
    if _POOL_KEY not in config.stash:
        config.stash[_POOL_KEY] = ServerPool()
    return config.stash[_POOL_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Runs before the test's fixtures are set up: stop what is no longer needed, launch what is.
    if not _ours(item) or not _kinds(item):
        return
    pool = _local_pool(item.config)
    if pool is not None:
        items = item.session.items
        pool.plan([_kinds(i) for i in items[items.index(item):] if _ours(i)])


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    # After the last test of this folder that needs a server, stop them all (other folders' tests
    # may follow in the same session).
    pool = item.config.stash.get(_POOL_KEY, None)
    if pool is None or not _ours(item):
        return
    items = item.session.items
    if not any(_ours(i) and _kinds(i) for i in items[items.index(item) + 1:]):
        pool.close()


def pytest_sessionfinish(session, exitstatus):
    pool = session.config.stash.get(_POOL_KEY, None)
    if pool is not None:
        pool.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    pool = config.stash.get(_POOL_KEY, None)
    if pool and pool.startup_s:
        parts = [f"{n}: {', '.join(f'{s:.1f}' for s in v)} s" for n, v in pool.startup_s.items()]
        terminalreporter.write_line("real vLLM server start-up (launch to healthy): " + "; ".join(parts))


# --- fixtures --------------------------------------------------------------------------------------

def _unavailable(reason: str) -> None:
    if _truthy(os.environ.get("CI")):
        pytest.fail(f"real-vLLM tier not set up under CI: {reason}", pytrace=False)
    pytest.skip(f"real-vLLM tier not set up: {reason}")


@pytest.fixture(scope="session")
def vllm_pool(request) -> ServerPool | None:
    if os.environ.get("GYM_ROLLOUTS_VLLM_URL"):
        return None
    missing = rv.tier_missing()
    if missing:
        _unavailable(missing)
    return _local_pool(request.config)  # closed by pytest_sessionfinish


def _server_url(name: str, pool: ServerPool | None) -> str:
    spec = SPECS[name]
    if pool is None:  # external servers
        url = os.environ.get(spec.env_url)
        if not url:
            pytest.skip(f"{spec.env_url} is not set (needed next to GYM_ROLLOUTS_VLLM_URL for this test)")
        return _v1(url)
    return pool.get(name).base_url


@pytest.fixture(scope="session")
def real_vllm(vllm_pool) -> str:
    """Base URL (``.../v1``) of the recommended server: hermes tool parser, no reasoning parser."""
    return _server_url("real_vllm", vllm_pool)


@pytest.fixture(scope="session")
def real_vllm_reasoning(vllm_pool) -> str:
    """Base URL of a server with ``--reasoning-parser deepseek_r1`` (and the hermes tool parser)."""
    return _server_url("real_vllm_reasoning", vllm_pool)


@pytest.fixture(scope="session")
def real_vllm_no_tools(vllm_pool) -> str:
    """Base URL of a server started without ``--enable-auto-tool-choice``/``--tool-call-parser``."""
    return _server_url("real_vllm_no_tools", vllm_pool)


@pytest.fixture(scope="session")
def real_vllm_model(real_vllm) -> str:
    return os.environ.get("GYM_ROLLOUTS_VLLM_MODEL") or rv.served_model_name(real_vllm)


@pytest.fixture(scope="session")
def real_vllm_local(vllm_pool) -> bool:
    return vllm_pool is not None
