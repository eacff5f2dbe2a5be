"""Resources from another package: a tiny plugin package "installed" for the test (its module and
a ``*.dist-info`` with METADATA + entry_points.txt on the PYTHONPATH of a real ``collect``, found by
importlib.metadata like a pip-installed one) is selected by name with no file in our conf/."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from gym_rollouts.embedded import EmbeddedProcess

PLUGIN_MODULE = '''
"""A third-party package's resources (the template of docs/resources.md)."""
from gym_rollouts.resource.base import Resource, Verification, final_text


class EchoWordsResource(Resource):
    """Reward 1.0 when the final answer repeats the row's ``word``."""

    name = "echo_words"
    default_params = {"case_sensitive": False}

    def __init__(self, case_sensitive: bool = False) -> None:
        self.case_sensitive = case_sensitive

    def row_problem(self, row):
        return None if isinstance(row.get("word"), str) else "no 'word' to look for"

    async def verify(self, row, response, state):
        text, word = final_text(response), row["word"]
        if not self.case_sensitive:
            text, word = text.lower(), word.lower()
        return Verification(float(word in text), {"looked_for": row["word"]})


class SumsResource(Resource):
    """Generates its own tasks: "What is i + i?" for i < count."""

    name = "sums"

    def __init__(self, count: int) -> None:
        self.count = count

    def generated_rows(self):
        return ({"responses_create_params": {"input": f"What is {i} + {i}?"}, "expected": str(2 * i)}
                for i in range(self.count))

    async def verify(self, row, response, state):
        return Verification(float(row["expected"] in final_text(response)))


def make_sums(count: int = 3) -> Resource:
    return SumsResource(count)


make_sums.generates_inputs = True
make_sums.default_params = {"count": 3}
'''

ENTRY_POINTS = """\
[gym_rollouts.resources]
echo_words = tiny_gym_plugin:EchoWordsResource
sums = tiny_gym_plugin:make_sums
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "tiny_gym_plugin").mkdir()
    (root / "tiny_gym_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    dist = root / "tiny_gym_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-gym-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def run(command: str, plugin_path: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_path), env.get("PYTHONPATH")) if p)
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", f"gym_rollouts.cli.{command}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def rows_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_plugin_resource_is_chosen_by_name(plugin_path: Path, embedded_server: EmbeddedProcess,
                                             tmp_path: Path) -> None:
    source = tmp_path / "words.jsonl"
    banana = {"responses_create_params": {"input": "Say Banana please"}, "word": "Banana"}
    kiwi = {"responses_create_params": {"input": "Say kiwi please"}, "word": "kiwi", "agent_ref": {"name": "fruit"}}
    source.write_bytes(orjson.dumps(banana) + b"\n" + orjson.dumps(kiwi) + b"\n")
    out = tmp_path / "out.jsonl"
    proc = run("collect", plugin_path, tmp_path, "resource=echo_words", f"input_jsonl_fpath={source}",
               "environments={fruit: echo_words}", f"output_jsonl_fpath={out}",
               f"policy_base_url={embedded_server.base_url}", "progress=off", f"hydra.run.dir={tmp_path}/hydra")
    assert proc.returncode == 0, proc.stderr
    rows = {r["looked_for"]: r for r in rows_of(out)}
    assert rows["Banana"]["agent_ref"]["name"] == "echo_words_agent"  # resource=echo_words
    assert rows["kiwi"]["agent_ref"]["name"] == "fruit"  # environments.fruit=echo_words
    assert [r["reward"] for r in rows.values()] == [1.0, 1.0]  # the toy model repeats what it was told
    shown = run("dump_config", plugin_path, tmp_path, "resource=echo_words", "resource.params.case_sensitive=true")
    assert shown.returncode == 0, shown.stderr
    assert "cls: tiny_gym_plugin:EchoWordsResource" in shown.stdout and "case_sensitive: true" in shown.stdout


def test_a_plugin_factory_that_generates_its_tasks(plugin_path: Path, embedded_server: EmbeddedProcess,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "sums.jsonl"
    proc = run("collect", plugin_path, tmp_path, "resource=sums", "resource.params.count=4",
               f"output_jsonl_fpath={out}", f"policy_base_url={embedded_server.base_url}", "progress=off",
               f"hydra.run.dir={tmp_path}/hydra")
    assert proc.returncode == 0, proc.stderr
    assert [r["expected"] for r in rows_of(tmp_path / "sums_generated_inputs.jsonl")] == ["0", "2", "4", "6"]
    assert sorted(r["reward"] for r in rows_of(out)) == [1.0] * 4


def test_a_misspelled_plugin_name_gets_a_hint(plugin_path: Path, tmp_path: Path) -> None:
    proc = run("collect", plugin_path, tmp_path, "resource=echo_word")
    assert proc.returncode == 2
    assert "Did you mean 'resource=echo_words'?" in proc.stderr and "sums" in proc.stderr
    without = run("collect", tmp_path / "nowhere", tmp_path, "resource=echo_words")  # not installed
    assert without.returncode == 2 and "Unknown option 'echo_words'" in without.stderr
