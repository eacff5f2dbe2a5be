"""doctor names the embedded demo backend as such, not as the vLLM version it imitates: the
embedded server's /version carries a marker field (real vLLM answers only ``version``)."""

from __future__ import annotations

import orjson
import pytest

from gym_rollouts import __version__
from gym_rollouts.doctor.check_server import check_reachability
from gym_rollouts.doctor.facts import Exchange, ServerFacts
from gym_rollouts.embedded.server import VERSION_MARKER

URL = "http://127.0.0.1:8000/v1"
EMBEDDED = f"the server is up: embedded demo backend (gym_rollouts {__version__}), not vLLM"


@pytest.mark.parametrize(("version", "embedded_version", "summary"), [
    ("0.32.0", None, "the server is up (vLLM 0.32.0)"),
    ("0.32.0", __version__, EMBEDDED),
    (None, __version__, EMBEDDED),
    (None, None, "the server is up"),
])
def test_reachability_line_names_the_server_kind(version, embedded_version, summary) -> None:
    facts = ServerFacts(URL, health=Exchange(URL, status=200), version=version, embedded_version=embedded_version)
    assert check_reachability(facts).summary == summary


async def test_embedded_version_answer_carries_the_marker(start_server) -> None:
    import aiohttp

    server = await start_server()
    async with aiohttp.ClientSession() as session, session.get(server.root_url + "/version") as resp:
        body = await resp.json()
    assert body == {"version": "0.32.0", VERSION_MARKER: __version__}


def test_doctor_against_an_embedded_server_given_as_policy_base_url(run_cli, embedded_server) -> None:
    """Even configured as a fleet, the embedded server is not reported as vLLM."""
    result = run_cli("doctor", f"policy_base_url={embedded_server.base_url}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[PASS] 1 reachability {embedded_server.base_url}: {EMBEDDED}" in result.stdout
    assert "(vLLM " not in result.stdout


def test_doctor_json_without_url(run_cli) -> None:
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["embedded_backend"] is True
    [reach] = [f for f in report["findings"] if f["check"] == "reachability"]
    assert reach["summary"] == EMBEDDED
