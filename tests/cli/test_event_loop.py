"""The event loop collect runs on (cli/event_loop.py): the choice table, and the real command on
both loops against the embedded server giving the same rows (ids aside)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from gym_rollouts.cli import event_loop
from gym_rollouts.errors import ConfigError

try:
    import uvloop  # noqa: F401
    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False


@pytest.mark.parametrize(("choice", "installed", "expected"), [
    ("", True, "uvloop"), ("auto", True, "uvloop"), (" AUTO ", True, "uvloop"), ("asyncio", True, "asyncio"),
    ("uvloop", True, "uvloop"), ("", False, "asyncio"), ("auto", False, "asyncio"), ("asyncio", False, "asyncio"),
    ("uvloop", False, ConfigError), ("tokio", True, ConfigError), ("tokio", False, ConfigError),
])
def test_choice_table(monkeypatch: pytest.MonkeyPatch, choice: str, installed: bool, expected: Any) -> None:
    if installed and not HAVE_UVLOOP:
        pytest.skip("uvloop is not installed (pip install 'gym_rollouts[fast]')")
    if not installed:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    if expected is ConfigError:
        with pytest.raises(ConfigError, match=event_loop.ENV):
            event_loop.loop_factory(choice)
        return
    name, factory = event_loop.loop_factory(choice)
    assert name == expected
    assert (factory is None) == (expected == "asyncio")


@pytest.mark.parametrize("choice", ["asyncio", "auto"])
def test_run_uses_the_chosen_loop(choice: str) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = event_loop.run(loop_module(), {event_loop.ENV: choice})
    assert module.startswith("uvloop" if choice == "auto" and HAVE_UVLOOP else "asyncio")


def test_a_bad_choice_closes_the_coroutine() -> None:
    async def never() -> None:  # pragma: no cover - must not run
        raise AssertionError

    coro = never()
    with pytest.raises(ConfigError):
        event_loop.run(coro, {event_loop.ENV: "nope"})
    assert coro.cr_frame is None  # closed, not left pending


def _stable(row: dict[str, Any]) -> Any:
    """A row without what differs between any two runs (generated ids, timestamps)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("id", "call_id", "created_at")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(row)


def _rows(path: Path) -> list[Any]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return sorted((_stable(r) for r in rows), key=lambda r: (r["_ng_task_index"], r["_ng_rollout_index"]))


def test_collect_on_both_loops_writes_the_same_rows(run_cli, embedded_server, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {}
    for choice in ("asyncio", "auto"):
        monkeypatch.setenv(event_loop.ENV, choice)
        out = tmp_path / f"{choice}.jsonl"
        result = run_cli("collect", "resource=weather", "limit=6", "num_repeats=2", "progress=off",
                         f"policy_base_url={embedded_server.base_url}", f"output_jsonl_fpath={out}",
                         f"hydra.run.dir={tmp_path}/h_{choice}")
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[choice] = _rows(out)
    assert len(outputs["asyncio"]) == 12
    assert outputs["asyncio"] == outputs["auto"]


def test_collect_refuses_an_unknown_loop(run_cli, embedded_server, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENV, "tokio")
    result = run_cli("collect", "limit=1", "progress=off", f"policy_base_url={embedded_server.base_url}",
                     f"output_jsonl_fpath={tmp_path}/out.jsonl", f"hydra.run.dir={tmp_path}/h")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "GYM_ROLLOUTS_EVENT_LOOP='tokio'" in result.stderr
    assert "Traceback" not in result.stderr
