"""Wire tests: the launchers, the CLI, kill + restart on the same port, start-time flags, and
the server exiting when its launcher dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from gym_rollouts.embedded_resources import (
    EmbeddedStartError,
    ResourcesConfig,
    ResourcesControl,
    launch_resources,
    resources_subprocess,
)
from gym_rollouts.embedded_resources.__main__ import main as cli_main
from resources_helpers import ROW, Client, response_obj

MODULE = "gym_rollouts.embedded_resources"


async def test_kill_and_restart_on_the_same_port_loses_the_sessions():
    async with launch_resources(ResourcesConfig(name="wire_env")) as proc, \
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        assert proc.url == f"http://127.0.0.1:{proc.port}" and proc.port > 0
        c = Client(http, proc.url)
        assert (await c.post("/seed_session", {**ROW, "initial_count": 4}))[0] == 200
        row = {**ROW, "expected_count": 4, "response": response_obj()}
        assert (await c.post("/verify", row))[1]["reward"] == 1.0
        first_pid, port, old_cookie = proc.pid, proc.port, c.cookie
        await proc.kill()
        assert not proc.alive and proc.returncode == -signal.SIGKILL
        with pytest.raises(aiohttp.ClientConnectionError):
            await Client(http, proc.url).get("/")
        await proc.restart()
        assert (proc.port, proc.alive) == (port, True) and proc.pid != first_pid
        # the old cookie is refused by the new process (new secret): a fresh session, no state
        status, out = await c.post("/verify", row)
        assert (status, out["reward"]) == (200, 0.0) and c.cookie != old_cookie
        stats = await asyncio.to_thread(ResourcesControl(proc.url).stats)
        assert stats["sessions_alive"] == 0 and stats["requests"] == {"/verify": 1}
        await proc.terminate()
        assert proc.returncode == 0  # SIGTERM is a clean stop
    assert not proc.alive


def test_start_time_flags():
    args = ["--name", "flags", "--no-openapi", "--latency-ms", "120",
            "--fault", "/verify=500:1", "--fault", "/get_weather=422"]
    with resources_subprocess(args) as proc:
        async def check():
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
                c = Client(http, proc.url)
                started = time.monotonic()
                health = await c.get("/")
                elapsed = time.monotonic() - started
                statuses = [(await c.post("/verify", {**ROW, "response": response_obj()}))[0] for _ in range(2)]
                return health, elapsed, statuses, await c.post("/get_weather", {"city": "x"}), await c.get("/openapi.json")
        health, elapsed, verify, weather, openapi = asyncio.run(check())
        assert health == (200, {"status": "ok"}) and elapsed >= 0.12
        assert verify == [500, 200] and weather[0] == 422
        assert openapi == (404, {"detail": "Not Found"})  # a server that cannot say which tools it serves
        assert ResourcesControl(proc.url).stats()["cookie_name"] == "EmbeddedResourcesServer___flags"
        pid = proc.pid
    assert proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cli_prints_one_ready_line_and_stops_on_sigint():
    proc = subprocess.Popen([sys.executable, "-m", MODULE, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.rstrip().rsplit(":", 1)[1].isdigit()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == "" and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--fault", "/verify=boom"], "unknown mode"),
    (["--fault", "/nope=500"], "unknown route"),
    (["--no-openapi", "--fault", "/openapi.json=500"], "unknown route"),
    (["--head", "--latency-ms", "5"], "--latency-ms: only without --head"),
    (["--agent", "a=b"], "--agent: only with --head"),
    (["--head", "--env", "e=http://127.0.0.1:1", "--agent", "a=x"], "no --env named 'x'"),
    (["--parent-pid", "x"], "--parent-pid"),
])
def test_bad_flags_stop_with_a_message(args, message, capsys):
    assert cli_main(args) == 2  # refused before anything listens
    out, err = capsys.readouterr()
    assert message in err and out == ""


def test_start_failure_reports_stderr():
    with pytest.raises(EmbeddedStartError, match="unknown mode"):
        with resources_subprocess(["--fault", "*=boom"], startup_timeout=20):
            pass


LAUNCHER = r"""
import time
from gym_rollouts.embedded_resources import resources_subprocess
with resources_subprocess() as proc:
    print(proc.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead for our purpose
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_server_exits_when_its_launcher_is_killed():
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(launcher.stdout.readline())
        assert _alive(server_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(server_pid), "resources server outlived its killed launcher"
    finally:
        launcher.kill()
        launcher.wait()
