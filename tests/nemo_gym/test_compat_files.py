"""NeMo Gym's own files as shipped in the ``nemo-gym`` wheel: every
``resources_servers/*/data/example.jsonl`` and ``example_rollouts.jsonl`` goes through ``collect``
(the embedded backend on the model side) and ``dump_config``. Each either runs, or is refused
before any request with a message naming what we do not serve; none runs with a silent
difference. Run twice: as a new user would (no environment configured: every file is refused,
none scored by our demo), and pointed at the session's NeMo Gym head server (the files of its
three environments run; every other one is refused naming its agent or environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gym_rollouts.cli.dump_config import render
from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.session import run_collection
from gym_rollouts.errors import ConfigError, InputError
from gym_rollouts.testing import nemo_gym as ng

SP = ng.site_packages()
FILES = sorted(p for name in ("example.jsonl", "example_rollouts.jsonl")
               for p in (SP / "resources_servers").glob(f"*/data/{name}")) if SP else []
RUNNING = ("example_single_tool_call", "mcqa", "example_session_state_mgmt")
# What a refusal must name: the unsupported part, and what to do.
NAMED = ("maps to no environment", "lacks field(s)", "no environment is chosen", "does not serve", "is NeMo Gym's",
         "not supported", "cannot", "no agent_ref", "is not reachable", "must be", "invalid JSON")


def _model_calls(server) -> float:
    import urllib.request

    text = urllib.request.urlopen(server.root_url + "/metrics", timeout=10).read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("vllm:request_success_total"))


def _cfg(tmp_path: Path, src: Path, server, *extra: str):
    return build_collect_config(compose_plain(
        [f"policy_base_url={server.base_url}", f"input_jsonl_fpath={src}",
         f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "progress=off", "limit=3", *extra], cwd=tmp_path))


async def _outcome(cfg, server) -> tuple[str, str]:
    before = _model_calls(server)
    try:
        result = await run_collection(cfg)
    except (InputError, ConfigError) as exc:
        assert _model_calls(server) == before, "refused after a model request"
        return "refused", str(exc)
    return ("ran" if result.failures == 0 else "failed"), ""


def _env_of(path: Path) -> str:
    return path.parent.parent.name


@pytest.fixture(scope="module", autouse=True)
def _wheel() -> None:
    if not FILES:
        import os

        reason = ng.tier_missing() or "no NeMo Gym example files found in the wheel"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off"):
            pytest.fail(f"NeMo Gym tier not set up under CI: {reason}", pytrace=False)
        pytest.skip(f"NeMo Gym tier not set up: {reason}")


@pytest.mark.parametrize("src", FILES or [Path("absent")], ids=lambda p: f"{_env_of(p)}/{p.name}")
async def test_as_a_new_user_every_file_is_refused_up_front(tmp_path: Path, embedded_server, src: Path) -> None:
    kind, message = await _outcome(_cfg(tmp_path, src, embedded_server), embedded_server)
    assert kind == "refused", f"{src} ran against our demo"
    assert any(n in message for n in NAMED), message
    render(compose_plain([f"input_jsonl_fpath={src}"], cwd=tmp_path))  # dump_config prints it


@pytest.mark.parametrize("src", FILES or [Path("absent")], ids=lambda p: f"{_env_of(p)}/{p.name}")
async def test_against_the_head_server_files_run_or_are_refused_by_name(tmp_path: Path, embedded_server,
                                                                        nemo_gym_stack, src: Path) -> None:
    env = _env_of(src)
    extra = [f"+agent_name={nemo_gym_stack.agent_name(env)}"] if env in RUNNING else []
    cfg = _cfg(tmp_path, src, embedded_server, "resource=nemo_gym", f"resource.params.head_url={nemo_gym_stack.head_url}",
               *extra)
    kind, message = await _outcome(cfg, embedded_server)
    if env in RUNNING and src.name == "example.jsonl":
        assert kind == "ran", message
    elif env in RUNNING:  # NeMo Gym's verify answers drop the task fields the seed needs (its own reruns fail too)
        assert kind == "ran" or (kind == "refused" and "lacks field(s)" in message), message
    else:
        assert kind == "refused", f"{src} ran against an environment that is not its own"
        assert any(n in message for n in NAMED), message
