"""Start and stop a real vLLM OpenAI-compatible server as a subprocess (test tier 3).

Owns: the command line and environment of a CPU vLLM server for the tiny local model
(``scripts/setup_real_vllm.sh`` builds both), waiting on ``/health``, and a clean stop (SIGINT to
the server's PID, then SIGKILL to its process group). Pure standard library, so it imports in any
venv: the tests run in the main venv, the server runs with ``.venv-vllm/bin/python``.

    with start_vllm(".cache/tiny-model") as server:
        server.base_url      # "http://127.0.0.1:PORT/v1"
        server.root_url      # "http://127.0.0.1:PORT"   (/health, /version, /tokenize, /metrics)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PYTHON = ".venv-vllm/bin/python"
DEFAULT_MODEL_DIR = ".cache/tiny-model"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"

# Environment every server gets: a small KV cache (GiB), never touch the Hub, no usage reporting.
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


class VLLMStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message ends with its log tail."""


def resolve(path: str | os.PathLike[str], base: Path = REPO_ROOT) -> Path:
    """A path as given if absolute, else relative to ``base`` (the repo root)."""
    p = Path(path)
    return p if p.is_absolute() else base / p


def tier_missing(
    python: str | os.PathLike[str] = DEFAULT_PYTHON,
    model_dir: str | os.PathLike[str] = DEFAULT_MODEL_DIR,
) -> str | None:
    """Why a local server cannot be started (None when the venv and the model are there)."""
    py, model = resolve(python), resolve(model_dir)
    missing = []
    if not py.exists():
        missing.append(f"no vLLM interpreter at {py}")
    if not (model / "config.json").is_file():
        missing.append(f"no tiny model at {model}")
    if not missing:
        return None
    return "; ".join(missing) + " (set it up with: bash scripts/setup_real_vllm.sh)"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the usual bind-to-0 trick; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def vllm_command(
    model_dir: str | os.PathLike[str],
    *,
    port: int,
    host: str = "127.0.0.1",
    served_name: str = "tiny",
    tool_parser: str | None = "hermes",
    reasoning_parser: str | None = None,
    max_model_len: int = 2048,
    extra_args: Sequence[str] = (),
    python: str | os.PathLike[str] = DEFAULT_PYTHON,
) -> list[str]:
    """The argv of one server (pure: nothing is started)."""
    cmd = [
        str(resolve(python)), "-m", SERVER_MODULE,
        "--model", str(resolve(model_dir)),
        "--served-model-name", served_name,
        "--host", host,
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        "--dtype", "float32",
        "--enforce-eager",
        "--disable-uvicorn-access-log",
    ]
    if tool_parser:
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", tool_parser]
    if reasoning_parser:
        cmd += ["--reasoning-parser", reasoning_parser]
    cmd += list(extra_args)
    return cmd


def vllm_env(base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ``base`` (default: this process's) + SERVER_ENV + ``extra``."""
    env = dict(os.environ if base is None else base)
    for key, value in SERVER_ENV.items():
        env.setdefault(key, value)
    env.update(extra or {})
    return env


def http_json(
    url: str, body: Any = None, *, method: str | None = None, timeout: float = 120.0
) -> tuple[int, Any]:
    """One plain HTTP request (no pooling): ``(status, parsed JSON body or raw text)``.

    POST with a JSON body when ``body`` is given, else GET. HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method or ("GET" if body is None else "POST"),
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def root_of(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (``/health``, ``/tokenize``, ``/metrics`` live there)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def served_model_name(base_url: str, timeout: float = 30.0) -> str:
    """The first model id that ``GET {base_url}/models`` lists."""
    status, body = http_json(base_url.rstrip("/") + "/models", timeout=timeout)
    if status != 200 or not isinstance(body, dict) or not body.get("data"):
        raise RuntimeError(f"GET {base_url}/models answered {status}: {str(body)[:300]}")
    return body["data"][0]["id"]


def log_tail_of(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file (its last 64 kB), or why there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _child_signals() -> None:
    # A shell's background job starts with SIGINT ignored, and an ignored signal stays ignored
    # across exec: give the server back the default dispositions so SIGINT stops it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class VLLMServer:
    """A running server; stop it with ``stop()`` or use it as a context manager."""

    process: subprocess.Popen
    host: str
    port: int
    served_name: str
    model_dir: Path
    log_path: Path
    command: list[str]
    started_at: float = 0.0  # time.monotonic() at launch
    startup_s: float | None = None  # launch -> healthy, once known
    options: dict = field(default_factory=dict)

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return log_tail_of(self.log_path, lines)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT the server, wait up to ``timeout`` s, then SIGKILL its process group.

        Idempotent. Returns the exit code (None if it could not be reaped)."""
        proc = self.process
        if proc.poll() is None:
            t0 = time.monotonic()
            try:
                os.kill(proc.pid, signal.SIGINT)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                logger.warning("vLLM pid %d ignored SIGINT for %.0f s; killing it", proc.pid, timeout)
            logger.info("vLLM pid %d stopped in %.1f s", proc.pid, time.monotonic() - t0)
        # The engine core and other helpers share the server's process group (its own session):
        # make sure none of them outlives it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def wait_healthy(self, timeout: float = 300.0) -> VLLMServer:
        """Wait until ``/health`` answers 200 (counting from the launch); returns self.

        Raises VLLMStartError with the log tail if the process exits first or ``timeout``
        seconds pass since the launch (the server is stopped then)."""
        if self.startup_s is not None:
            return self
        health = f"{self.root_url}/health"
        deadline = self.started_at + timeout
        cmd = " ".join(self.command)
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()  # its helpers (engine core) may outlive it
                raise VLLMStartError(
                    f"vLLM exited with code {code} during startup ({cmd}); "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            if _healthy(health):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise VLLMStartError(
                    f"vLLM was not healthy {timeout:.0f} s after its launch ({cmd}); "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            time.sleep(0.5)
        self.startup_s = time.monotonic() - self.started_at
        logger.info("vLLM pid %d healthy at %s after %.1f s", self.pid, self.base_url, self.startup_s)
        return self

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_vllm(
    model_dir: str | os.PathLike[str] = DEFAULT_MODEL_DIR,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    served_name: str = "tiny",
    tool_parser: str | None = "hermes",
    reasoning_parser: str | None = None,
    max_model_len: int = 2048,
    extra_args: Sequence[str] = (),
    python: str | os.PathLike[str] = DEFAULT_PYTHON,
    log_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> VLLMServer:
    """Start the server process and return at once; ``wait_healthy()`` waits for it.

    ``tool_parser`` adds ``--enable-auto-tool-choice --tool-call-parser NAME`` (None: neither flag,
    so requests with tools and ``tool_choice: auto`` are refused). ``reasoning_parser`` adds
    ``--reasoning-parser NAME``. ``env`` is added to the inherited environment and SERVER_ENV.
    ``port=None`` picks a free port. The server log goes to ``log_path`` (default: a temp file).
    Lets a caller start several servers side by side: their start-up is mostly single-threaded
    Python imports."""
    missing = tier_missing(python, model_dir)
    if missing:
        raise VLLMStartError(missing)
    py = resolve(python)
    model = resolve(model_dir)
    if port and port_in_use(port, host):
        raise VLLMStartError(f"port {port} on {host} is already in use")
    port = port or free_port(host)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"vllm-{served_name}-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = vllm_command(
        model, port=port, host=host, served_name=served_name, tool_parser=tool_parser,
        reasoning_parser=reasoning_parser, max_model_len=max_model_len,
        extra_args=extra_args, python=py,
    )
    logger.info("starting vLLM on %s:%d (log %s): %s", host, port, log, " ".join(cmd))
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=vllm_env(extra=env), cwd=str(REPO_ROOT), start_new_session=True,
            preexec_fn=_child_signals,
        )
    return VLLMServer(
        process=proc, host=host, port=port, served_name=served_name, model_dir=model,
        log_path=log, command=cmd, started_at=started,
        options={"tool_parser": tool_parser, "reasoning_parser": reasoning_parser,
                 "max_model_len": max_model_len, "extra_args": list(extra_args)},
    )


def start_vllm(
    model_dir: str | os.PathLike[str] = DEFAULT_MODEL_DIR, *, startup_timeout: float = 300.0, **kw: Any
) -> VLLMServer:
    """Start one vLLM server (``launch_vllm``'s arguments) and return it once ``/health`` answers 200.

    Raises VLLMStartError (with the server log tail) if the process exits or is not healthy
    within ``startup_timeout`` seconds; the process is stopped in that case."""
    return launch_vllm(model_dir, **kw).wait_healthy(startup_timeout)
