"""Start and stop a real NeMo Gym stack with NeMo Gym's own ``ng_run`` (the NeMo Gym test tier).

Owns: launching ``.venv-nemo-gym/bin/ng_run`` on the config ``nemo_gym_config.plan_stack`` writes
(each environment's shipped resources-server and ``<env>_simple_agent`` blocks, a ``policy_model``,
fixed free loopback ports) in a fresh run folder, in its own process group with SIGINT restored;
waiting until every server answers ``GET /`` with 200; a stop that leaves nothing running (ng_run,
its Ray, the uvicorn servers); building ahead the per-server venvs ng_run makes (``prepare_venvs``,
run by ``scripts/setup_nemo_gym.sh``); a handle on an already running stack (``connect_stack``).
Standard library + PyYAML only (both the main venv and .venv-nemo-gym have them). See
docs/nemo_gym_tier.md.

    with start_stack(["example_single_tool_call", "mcqa"]) as stack:
        stack.head_url                      # http://127.0.0.1:PORT (head server)
        stack.env_url("mcqa")               # http://127.0.0.1:PORT (resources server)
        stack.agent_name("mcqa")            # "mcqa_simple_agent"
        stack.example_jsonl("mcqa")         # <site-packages>/resources_servers/mcqa/data/example.jsonl

From a shell: ``python -m gym_rollouts.testing.nemo_gym up --envs mcqa`` (holds until Ctrl-C) and
``python -m gym_rollouts.testing.nemo_gym prepare`` (builds the server venvs, then exits).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Re-exported: callers need only this module.
from gym_rollouts.testing.nemo_gym_config import (  # noqa: F401
    AGENT_DIR, MODEL_DIR, MODEL_INSTANCE, UNUSED_POLICY_URL, EnvEndpoint, EnvSpec, NemoGymStartError, StackPlan,
    endpoints_from_head, free_port, plan_stack, shipped_blocks,
)
from gym_rollouts.testing.proctree import process_tree, rss_bytes, still_running
from gym_rollouts.testing.real_vllm import http_json, log_tail_of, port_in_use, resolve

logger = logging.getLogger(__name__)

DEFAULT_VENV = ".venv-nemo-gym"
SERVER_VENVS = "server_venvs"  # under the venv: <type>/<name>/.venv, as ng_run's uv_venv_dir lays them out
WORK_DIR = ".cache/nemo_gym"  # logs/ and runs/ (ng_run's cwd: config, hydra outputs, its cache/)
DEFAULT_ENVS = ("example_single_tool_call", "mcqa", "example_session_state_mgmt")
HEAD_URL_ENV = "GYM_ROLLOUTS_NEMO_GYM_HEAD_URL"  # read by callers (conftest, scripts), never here
PREPARED_MARKER = ".gym_rollouts_prepared"
READY_MARK = "servers ready!"  # ng_run's "All N / N servers ready! Polling every 60s"
# Never inherited by ng_run: they would point uv / Python / Ray at the caller's environment.
DROPPED_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "RAY_ADDRESS")
STACK_ENV = {"UV_PYTHON_DOWNLOADS": "never", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
             "DO_NOT_TRACK": "1", "WANDB_MODE": "disabled"}


# --- paths and small helpers ---------------------------------------------------------------------

def site_packages(venv: str | os.PathLike[str] = DEFAULT_VENV) -> Path | None:
    """The venv's site-packages (holds ``nemo_gym/`` and ``resources_servers/``), None if absent."""
    found = sorted(resolve(venv).glob("lib/python3.*/site-packages"))
    return found[0] if found else None


def base_python_bin(venv: str | os.PathLike[str] = DEFAULT_VENV) -> Path | None:
    """The bin folder of the interpreter the venv was made from (``home`` in pyvenv.cfg)."""
    try:
        for line in (resolve(venv) / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip())
    except OSError:
        return None
    return None


def tier_missing(venv: str | os.PathLike[str] = DEFAULT_VENV) -> str | None:
    """Why no stack can be started here (None when the NeMo Gym venv is in place)."""
    v = resolve(venv)
    missing = [f"no {v / 'bin' / exe}" for exe in ("ng_run", "uv") if not (v / "bin" / exe).exists()]
    home = base_python_bin(v)
    if not missing and (home is None or not home.is_dir()):
        missing.append(f"the interpreter folder of {v} ({home}) is gone")
    if not missing:
        return None
    return "; ".join(missing) + " (set it up with: bash scripts/setup_nemo_gym.sh)"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _child_setup(die_with_parent: bool) -> Callable[[], None]:
    """The ``preexec_fn`` of ng_run (libc's prctl is looked up here, before the fork)."""
    prctl = None
    if die_with_parent:
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            logger.warning("no prctl here: a killed launcher leaves its NeMo Gym stack running")

    def setup() -> None:
        # A background job starts with SIGINT ignored, and that survives exec: ng_run would then
        # ignore `kill -INT` (and so would its Ray). Give it the default dispositions back.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl is not None:  # PR_SET_PDEATHSIG: SIGINT when the launching thread dies
            prctl(1, int(signal.SIGINT), 0, 0, 0)

    return setup


def stack_env(venv: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """ng_run's environment: the venv's base interpreter first on PATH (uv skips venv interpreters
    and would otherwise try to download one), then the venv's bin (ng_run, uv), STACK_ENV."""
    env = {k: v for k, v in dict(os.environ if base is None else base).items() if k not in DROPPED_ENV}
    home = base_python_bin(venv)
    env["PATH"] = os.pathsep.join([str(home), str(venv / "bin"), env.get("PATH", "/usr/bin:/bin")])
    for key, value in STACK_ENV.items():
        env.setdefault(key, value)
    return env


def uv_cache_dir(venv: Path, env: Mapping[str, str]) -> str:
    """uv's own cache folder (ng_run's default is a fresh ``cache/uv`` under its cwd: cold)."""
    out = subprocess.run([str(venv / "bin" / "uv"), "cache", "dir"], env=dict(env), capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        raise NemoGymStartError(f"`uv cache dir` failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def _run_dir(label: str, port: int) -> tuple[Path, Path]:
    work = resolve(WORK_DIR)
    for sub in ("logs", "runs"):
        (work / sub).mkdir(parents=True, exist_ok=True)
        for old in (work / sub).iterdir():
            try:
                if time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
            except OSError:
                pass
    name = f"{label}-{os.getpid()}-{port}"
    run = work / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    return run, work / "logs" / f"{name}.log"


# --- the running stack ---------------------------------------------------------------------------

@dataclass
class NemoGymStack:
    """A stack started here (``process`` set) or found through a head server (``process`` None:
    ``stop()`` leaves it alone). Use ``stop()`` or the context-manager form."""

    head_url: str
    endpoints: dict[str, EnvEndpoint]
    site_packages: Path | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    config_path: Path | None = None
    urls: list[str] = field(default_factory=list)  # every server waited on (head first)
    started_at: float = 0.0
    startup_s: float | None = None  # launch -> all healthy
    stop_s: float | None = None  # SIGINT -> nothing left
    _tree: dict[int, int] = field(default_factory=dict)

    def env_url(self, env: str) -> str:
        return self._endpoint(env).url

    def agent_name(self, env: str) -> str | None:
        return self._endpoint(env).agent

    def _endpoint(self, env: str) -> EnvEndpoint:
        try:
            return self.endpoints[env]
        except KeyError:
            raise KeyError(f"environment {env!r} is not in this stack ({sorted(self.endpoints)})") from None

    @property
    def resources_servers_dir(self) -> Path | None:
        return None if self.site_packages is None else self.site_packages / "resources_servers"

    def example_jsonl(self, env: str) -> Path:
        if self.resources_servers_dir is None:
            raise FileNotFoundError("no local NeMo Gym wheel (bash scripts/setup_nemo_gym.sh)")
        return self.resources_servers_dir / env / "data" / "example.jsonl"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        return log_tail_of(self.log_path, lines) if self.log_path else "(no log: external stack)"

    def pids(self) -> dict[int, int]:
        """``{pid: start time}`` of ng_run and everything under it, running now."""
        if self.process is None:
            return {}
        self._tree.update(process_tree(self.process.pid))
        return {pid: self._tree[pid] for pid in still_running(self._tree)}

    def rss_bytes(self) -> int:
        return rss_bytes(self.pids())

    def wait_healthy(self, timeout: float = 300.0) -> NemoGymStack:
        """Wait until every server answers ``GET /`` with 200; on exit or timeout stop the stack and
        raise NemoGymStartError with the log tail. The timeout counts from the launch."""
        deadline = self.started_at + timeout
        pending = list(self.urls)
        while pending:
            if self.process is not None and self.process.poll() is not None:
                self.stop()
                raise NemoGymStartError(f"ng_run exited with {self.process.returncode} before "
                                        f"{pending} answered; log {self.log_path} ends with:\n{self.log_tail()}")
            pending = [u for u in pending if not _answers(u)]
            if pending and time.monotonic() > deadline:
                self.stop()
                raise NemoGymStartError(f"{pending} not healthy {timeout:.0f} s after the launch; "
                                        f"log {self.log_path} ends with:\n{self.log_tail()}")
            if pending:
                self.pids()  # remember the tree while it is complete
                time.sleep(0.5)
        self._wait_ng_run_ready(min(15.0, max(0.0, deadline - time.monotonic())))
        self.startup_s = time.monotonic() - self.started_at
        self.pids()
        logger.info("NeMo Gym stack healthy in %.1f s at %s", self.startup_s, self.head_url)
        return self

    def _wait_ng_run_ready(self, timeout: float) -> None:
        # ng_run polls its servers every 3 s and handles SIGINT (stopping its servers) only once it
        # has seen them all: until then a SIGINT leaves them to our SIGKILL. Wait for its word.
        end = time.monotonic() + timeout
        while self.log_path and READY_MARK not in self.log_tail(40) and time.monotonic() < end:
            if not self.alive():
                return
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT ng_run (it stops its servers and its Ray), wait up to ``timeout`` s, then SIGKILL
        its process group and every process seen under it. Idempotent; returns ng_run's exit code."""
        proc = self.process
        if proc is None:
            return None
        t0 = time.monotonic()
        self.pids()
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                logger.warning("ng_run pid %d ignored SIGINT for %.0f s; killing it", proc.pid, timeout)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in still_running(self._tree):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        end = time.monotonic() + 10
        while still_running(self._tree) and time.monotonic() < end:
            time.sleep(0.1)
        if self.stop_s is None:
            self.stop_s = time.monotonic() - t0
            logger.info("NeMo Gym stack (ng_run pid %d) stopped in %.1f s", proc.pid, self.stop_s)
        return code

    def leftovers(self) -> list[int]:
        """Processes of this stack still running (empty after a good ``stop()``)."""
        return still_running(self._tree)

    def __enter__(self) -> NemoGymStack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _spawn(venv: Path, plan: StackPlan, label: str, settings: Mapping[str, Any],
           die_with_parent: bool = True) -> tuple[subprocess.Popen, Path, Path]:
    """Write the config into a fresh run folder and start ng_run there (own session, SIGINT on)."""
    run, log = _run_dir(label, plan.head_port)
    env = stack_env(venv)
    config = {**plan.config, **settings, "uv_venv_dir": str(venv / SERVER_VENVS),
              "uv_cache_dir": uv_cache_dir(venv, env)}
    cfg = run / "stack.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [str(venv / "bin" / "ng_run"), "+config_paths=[stack.yaml]"]
    logger.info("starting NeMo Gym (%s) in %s, log %s", ", ".join(plan.endpoints), run, log)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=str(run), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_child_setup(die_with_parent))
    return proc, log, cfg


def launch_stack(
    envs: Sequence[str | EnvSpec] = DEFAULT_ENVS,
    *,
    head_port: int | None = None,
    policy_base_url: str | None = None,
    policy_model_name: str = "unused",
    policy_api_key: str = "EMPTY",
    model_extra: Mapping[str, Any] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    venv: str | os.PathLike[str] = DEFAULT_VENV,
    label: str = "stack",
    die_with_parent: bool = True,
) -> NemoGymStack:
    """Start ``ng_run`` for ``envs`` and return at once (``wait_healthy()`` waits).

    ``head_port=None`` picks a free port (never NeMo Gym's default 11000, so a developer's own
    stack is left alone). The agents' model server points at ``policy_base_url`` (default: a URL
    where nothing listens). Servers whose venv ``prepare_venvs`` built start from it
    (``skip_venv_if_present``); others are built by ng_run first (slower, may need the network).
    ``die_with_parent``: ng_run gets SIGINT when the calling *thread* ends (Linux PDEATHSIG), so
    launch from the main thread or one that outlives the stack, or pass False."""
    v = resolve(venv)
    missing = tier_missing(v)
    if missing:
        raise NemoGymStartError(missing)
    if head_port and port_in_use(head_port):
        raise NemoGymStartError(f"head port {head_port} on 127.0.0.1 is already in use; pick another")
    sp = site_packages(v)
    plan = plan_stack(envs, sp=sp, head_port=head_port, policy_base_url=policy_base_url,
                      policy_model_name=policy_model_name, policy_api_key=policy_api_key,
                      model_extra=model_extra, extra_config=extra_config)
    unprepared = [d for d in plan.server_dirs() if not _prepared(v, d)]
    if unprepared:
        logger.warning("no prepared venv for %s: ng_run builds it now (scripts/setup_nemo_gym.sh "
                       "prepares the default environments)", ["/".join(d) for d in unprepared])
    started = time.monotonic()
    proc, log, cfg = _spawn(v, plan, label, {"skip_venv_if_present": True}, die_with_parent)
    return NemoGymStack(head_url=plan.urls()[0], endpoints=plan.endpoints, site_packages=sp,
                        process=proc, log_path=log, config_path=cfg, urls=plan.urls(),
                        started_at=started)


def start_stack(envs: Sequence[str | EnvSpec] = DEFAULT_ENVS, *, startup_timeout: float = 300.0,
                **kw: Any) -> NemoGymStack:
    """``launch_stack(envs, **kw)`` and wait until every server is healthy (raises
    NemoGymStartError with the log tail otherwise, having stopped what was started)."""
    stack = launch_stack(envs, **kw)
    try:
        return stack.wait_healthy(startup_timeout)
    except BaseException:  # Ctrl-C while waiting too: never leave a half-started stack behind
        stack.stop()
        raise


def connect_stack(head_url: str, venv: str | os.PathLike[str] = DEFAULT_VENV,
                  timeout: float = 10.0) -> NemoGymStack:
    """A handle on a running stack, from its head server's ``/server_instances`` (where each
    server listens) and ``/global_config_dict_yaml`` (which agent names which environment)."""
    head = head_url.rstrip("/")
    status, instances = http_json(head + "/server_instances", timeout=timeout)
    status2, config_yaml = http_json(head + "/global_config_dict_yaml", timeout=timeout)
    if status != 200 or status2 != 200 or not isinstance(instances, list) or not isinstance(config_yaml, str):
        raise NemoGymStartError(f"{head} does not look like a NeMo Gym head server "
                                f"(/server_instances {status}, /global_config_dict_yaml {status2})")
    return NemoGymStack(head_url=head, endpoints=endpoints_from_head(instances, config_yaml),
                        site_packages=site_packages(venv),
                        urls=[head, *(i["url"] for i in instances if i.get("url"))])


# --- ahead-of-time venvs -------------------------------------------------------------------------

def _venv_of(venv: Path, server_dir: tuple[str, str]) -> Path:
    return venv / SERVER_VENVS / server_dir[0] / server_dir[1] / ".venv"


def _prepared(venv: Path, server_dir: tuple[str, str]) -> bool:
    return (_venv_of(venv, server_dir) / PREPARED_MARKER).is_file()


def prepare_venvs(envs: Sequence[str | EnvSpec] = DEFAULT_ENVS, *, venv: str | os.PathLike[str] = DEFAULT_VENV,
                  timeout: float = 1800.0) -> list[str]:
    """Have ng_run build the per-server venvs of ``envs`` (its ``dry_run`` mode: each server's
    venv is made and installed one after the other, its app imported, then ng_run exits).
    Idempotent: venvs marked prepared are kept, half-built ones are rebuilt. Returns the folders
    built now."""
    v = resolve(venv)
    missing = tier_missing(v)
    if missing:
        raise NemoGymStartError(missing)
    plan = plan_stack(envs, sp=site_packages(v))
    todo = [d for d in plan.server_dirs() if not _prepared(v, d)]
    if not todo:
        return []
    for ep in list(plan.endpoints.values())[1:]:  # one agent builds the agent venv: skip the others
        plan.config.pop(ep.agent)
    for d in todo:
        shutil.rmtree(_venv_of(v, d), ignore_errors=True)
    proc, log, _ = _spawn(v, plan, "prepare", {"dry_run": True, "skip_venv_if_present": True})
    stack = NemoGymStack(head_url=plan.urls()[0], endpoints=plan.endpoints, process=proc, log_path=log)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        stack.stop()
    broken = [d for d in todo if not (_venv_of(v, d) / "bin" / "python").exists()]
    if code != 0 or broken:
        raise NemoGymStartError(f"ng_run dry run exited with {code} (venvs missing: {broken}); "
                                f"log {log} ends with:\n{log_tail_of(log)}")
    for d in todo:
        (_venv_of(v, d) / PREPARED_MARKER).write_text(json.dumps({"built_at": time.time()}) + "\n")
    return ["/".join(d) for d in todo]


# --- command line (logging only: the setup script and developers read stderr) ---------------------

def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gym_rollouts.testing.nemo_gym",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["prepare", "up"])
    parser.add_argument("--envs", default=",".join(DEFAULT_ENVS), help="comma-separated environments")
    parser.add_argument("--head-port", type=int, default=None)
    parser.add_argument("--policy-base-url", default=None)
    parser.add_argument("--venv", default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[nemo_gym] %(message)s")
    envs = [e for e in args.envs.split(",") if e]
    t0 = time.monotonic()
    try:
        if args.command == "prepare":
            built = prepare_venvs(envs, venv=args.venv)
            logger.info("server venvs %s in %.1f s", f"built: {built}" if built else "already prepared",
                        time.monotonic() - t0)
            return 0
        for sig in (signal.SIGINT, signal.SIGTERM):  # a background job starts with SIGINT ignored
            signal.signal(sig, _interrupt)
        with start_stack(envs, head_port=args.head_port, policy_base_url=args.policy_base_url,
                         venv=args.venv, label="up") as stack:
            servers = "; ".join(f"{e.env} {e.url} (agent {e.agent} {e.agent_url})"
                                for e in stack.endpoints.values())
            logger.info("head %s; %s; log %s; Ctrl-C stops it", stack.head_url, servers, stack.log_path)
            while stack.alive():
                time.sleep(1)
            logger.error("ng_run exited; log ends with:\n%s", stack.log_tail())
            return 1
    except NemoGymStartError as e:
        logger.error("%s", e)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
