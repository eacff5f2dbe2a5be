"""Every row of NeMo Gym's own example files (resources_servers/*/data/*.jsonl of the installed
NeMo Gym 0.4.0) goes through ``request_problems`` and the body builder: no row fails because of a
null field, the scan and the builder agree row by row, images and audio arrive as chat parts, and
the only rows refused are refused for a reason we chose (named below)."""

from __future__ import annotations

import collections
import dataclasses
import glob
from pathlib import Path

import orjson
import pytest

from gym_rollouts.adapter.messages import RequestConversionError
from gym_rollouts.adapter.request import build_chat_body, request_problems
from gym_rollouts.config.schema import ModelConfig

_FOUND = sorted(glob.glob("/tmp/ngvenv/lib/python3*/site-packages/resources_servers"))
ROOT = Path(_FOUND[0]) if _FOUND else None
pytestmark = pytest.mark.skipif(ROOT is None, reason="NeMo Gym is not installed at /tmp/ngvenv (its example "
                                                    "files are the reference rows of this test)")
CFG = ModelConfig()
CAPTURE = dataclasses.replace(CFG, return_token_id_information=True)
# Refusals we chose, each with the files that have such rows (rows whose agent builds the conversation).
EXPECTED_REFUSALS = {
    "responses_create_params.input is empty and there are no instructions": {"aviary", "gdpval", "scicode"},
}


def _rows():
    """(file, line number, responses_create_params) of every task row; lines that are not JSON
    objects (git-lfs pointers) are not rows."""
    for path in sorted(ROOT.glob("*/data/*.jsonl")):
        with path.open("rb") as fh:
            for line_no, line in enumerate(fh, 1):
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("responses_create_params"), dict):
                    yield path, line_no, row["responses_create_params"]


def _without_nulls(params):
    return {k: v for k, v in params.items() if v is not None}


def _media_parts(messages):
    return collections.Counter(p["type"] for m in messages if isinstance(m["content"], list) for p in m["content"])


def _input_media(params):
    items = params["input"] if isinstance(params["input"], list) else []
    return sum(1 for i in items if isinstance(i.get("content"), list)
               for p in i["content"] if p.get("type") == "input_image")


def test_every_nemo_gym_row_builds_or_is_refused_for_a_reason_we_chose():
    rows = 0
    unexpected, seen_files = [], set()
    refused = collections.defaultdict(set)
    images_in = images_out = audio_rows = 0
    for path, line_no, params in _rows():
        rows += 1
        seen_files.add(path)
        where = f"{path.relative_to(ROOT)}:{line_no}"
        problems = request_problems(params)
        assert request_problems(_without_nulls(params)) == problems, f"{where}: a null field makes a problem"
        try:
            body = build_chat_body(params, CFG, "served")
        except RequestConversionError as exc:
            assert problems and str(exc).startswith(problems[0]), f"{where}: scan {problems} vs build {exc}"
            for problem in problems:
                reason = next((r for r in EXPECTED_REFUSALS if problem.startswith(r)), None)
                if reason is None:
                    unexpected.append(f"{where}: {problem}")
                else:
                    refused[reason].add(path.parts[len(ROOT.parts)])
            continue
        assert problems == [], f"{where}: the scan reports {problems} but the body builds"
        assert build_chat_body(params, CAPTURE, "served")["return_token_ids"] is True
        media = _media_parts(body["messages"])
        images_in += _input_media(params)
        images_out += media["image_url"]
        audio_rows += bool(media["audio_url"])
    assert rows > 1000 and len(seen_files) > 150, (rows, len(seen_files))  # the reference files were read
    assert unexpected == [], "\n".join(unexpected[:20])
    assert dict(refused) == EXPECTED_REFUSALS
    assert images_in > 0 and images_out == images_in  # every input_image became an image_url part
    assert audio_rows > 0  # asr_with_pc's metadata.audio_url rows carry their audio


def test_nemo_gym_example_rows_had_null_fields_we_now_accept():
    """The regression this guards: full pydantic dumps with previous_response_id / prompt / ... null."""
    nulls = collections.Counter(k for _, _, params in _rows() for k, v in params.items() if v is None)
    assert {"previous_response_id", "prompt", "background", "truncation", "include"} <= set(nulls)
