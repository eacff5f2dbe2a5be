"""Responses ``input`` -> chat ``messages``: one table row per conversion rule."""

from __future__ import annotations

import dataclasses

import pytest

from gym_rollouts.adapter.messages import (
    RequestConversionError,
    conversation_problems,
    input_items,
    responses_to_chat_messages,
)
from gym_rollouts.config.schema import ModelConfig

BASE = ModelConfig()
NO_INTERLEAVE = dataclasses.replace(BASE, uses_interleaved_reasoning=False)
NO_PARSER = dataclasses.replace(BASE, uses_reasoning_parser=False)
DEV_TO_SYSTEM = dataclasses.replace(BASE, replace_developer_role_with_system=True)


def user(text):
    return {"type": "message", "role": "user", "content": text}


def assistant(text):
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def reasoning(*texts):
    return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": t} for t in texts]}


def call(name, args, call_id="call_1"):
    return {"type": "function_call", "name": name, "arguments": args, "call_id": call_id, "id": "fc_1"}


def output(call_id, text):
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def text(t):
    return {"type": "input_text", "text": t}


def image(url="data:image/png;base64,iVBORw0K", **kw):
    return {"type": "input_image", "image_url": url, **kw}


def audio(data="UklGRg==", fmt="wav"):
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


PNG = "data:image/png;base64,iVBORw0K"


CASES = [
    ("string input is one user message",
     {"input": "hi"}, BASE, [{"role": "user", "content": "hi"}]),
    ("message without type defaults to message",
     {"input": [{"role": "user", "content": "x"}]}, BASE, [{"role": "user", "content": "x"}]),
    ("input_text parts are joined with a newline, as vLLM joins text parts",
     {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a "}, {"type": "input_text", "text": " b"}]}]},
     BASE, [{"role": "user", "content": "a \n b"}]),
    ("system parts join with a newline, system messages with a blank line",
     {"input": [{"role": "system", "content": [text("S1"), text("S2")]}, user("q")], "instructions": "I"},
     BASE, [{"role": "system", "content": "I\n\nS1\nS2"}, {"role": "user", "content": "q"}]),
    ("assistant output_text parts join with a newline; refusal parts are text",
     {"input": [user("q"), {"role": "assistant", "content": [{"type": "output_text", "text": "a"},
                                                           {"type": "refusal", "refusal": "no"}]}]},
     BASE, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a\nno"}]),
    ("a single text part is its text", {"input": [{"role": "user", "content": [text("only")]}]}, BASE,
     [{"role": "user", "content": "only"}]),
    ("an empty parts list is empty content", {"input": [{"role": "user", "content": []}]}, BASE,
     [{"role": "user", "content": ""}]),
    ("instructions become the system message",
     {"input": "q", "instructions": "be brief"}, BASE,
     [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]),
    ("instructions + leading system + developer fold into one system message",
     {"input": [{"role": "system", "content": "S"}, {"role": "developer", "content": "D"}, user("q")], "instructions": "I"},
     BASE, [{"role": "system", "content": "I\n\nS\n\nD"}, {"role": "user", "content": "q"}]),
    ("a later system message stays a system message",
     {"input": [user("q"), {"role": "system", "content": "S2"}]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "system", "content": "S2"}]),
    ("a later developer message stays developer by default",
     {"input": [user("q"), {"role": "developer", "content": "D2"}]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "developer", "content": "D2"}]),
    ("replace_developer_role_with_system",
     {"input": [user("q"), {"role": "developer", "content": "D2"}]}, DEV_TO_SYSTEM,
     [{"role": "user", "content": "q"}, {"role": "system", "content": "D2"}]),
    ("assistant message (output_text parts)",
     {"input": [user("q"), assistant("a"), user("q2")]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]),
    ("function_call -> tool_calls, arguments string passed through, output -> tool message",
     {"input": [user("q"), call("calc", '{"x": 1 }'), output("call_1", "2")]}, BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None,
       "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1 }'}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "2"}]),
    ("reasoning + message + two calls merge into one assistant message (interleaved: reasoning inline)",
     {"input": [user("q"), reasoning("R"), assistant("\n\n"), call("a", "{}", "c1"), call("b", "{}", "c2")]}, BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": "<think>R</think>\n\n",
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                      {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]}]),
    ("every reasoning block is kept (NeMo Gym keeps only the first)",
     {"input": [user("q"), reasoning("R1", "R2"), reasoning("R3"), assistant("A")]}, BASE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>R1</think><think>R2</think><think>R3</think>A"}]),
    ("uses_interleaved_reasoning=false drops reasoning from history",
     {"input": [user("q"), reasoning("R"), assistant("A")]}, NO_INTERLEAVE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]),
    ("inline <think> in an assistant message is reasoning too (dropped without interleaving)",
     {"input": [user("q"), assistant("<think>R</think>A")]}, NO_INTERLEAVE,
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]),
    ("without uses_reasoning_parser assistant text passes through untouched",
     {"input": [user("q"), assistant("<think>R</think>A")]}, dataclasses.replace(NO_PARSER, uses_interleaved_reasoning=False),
     [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>R</think>A"}]),
    ("reasoning item with reasoning_text content and no summary",
     {"input": [user("q"), {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "C"}]}, assistant("A")]},
     BASE, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>C</think>A"}]),
    ("a tool output between calls splits assistant messages",
     {"input": [user("q"), call("a", "{}", "c1"), output("c1", "1"), call("b", "{}", "c2"), output("c2", "2"), assistant("done")]},
     BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "1"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "2"},
      {"role": "assistant", "content": "done"}]),
    ("function_call_output as text parts / as a JSON value",
     {"input": [user("q"), call("a", "{}", "c1"), {"type": "function_call_output", "call_id": "c1",
                                                    "output": [{"type": "input_text", "text": "p1"}, {"type": "input_text", "text": "p2"}]},
                call("b", "{}", "c2"), {"type": "function_call_output", "call_id": "c2", "output": {"v": 1}}]},
     BASE,
     [{"role": "user", "content": "q"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "p1\np2"},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": '{"v":1}'}]),
    ("whitespace is preserved exactly",
     {"input": [user("  q\n"), assistant("\n a \n")]}, BASE,
     [{"role": "user", "content": "  q\n"}, {"role": "assistant", "content": "\n a \n"}]),
]


@pytest.mark.parametrize("params,cfg,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conversion(params, cfg, expected):
    assert responses_to_chat_messages(params, cfg) == expected


ERRORS = [
    ("missing input", {}, "input is missing"),
    ("input of the wrong type", {"input": 3}, "must be a string or a list"),
    ("unsupported item type is named", {"input": [{"type": "web_search_call", "id": "x"}]}, "'web_search_call'"),
    ("unsupported item type lists the supported ones", {"input": [{"type": "item_reference", "id": "x"}]},
     "message, reasoning, function_call, function_call_output"),
    ("image in a system message", {"input": [{"role": "system", "content": [image()]}, user("q")]},
     "input[0].content[0] is an input_image part in a system message; images and audio are supported in user messages only"),
    ("image in a later developer message", {"input": [user("q"), {"role": "developer", "content": [text("d"), image()]}]},
     "input[1].content[1] is an input_image part in a developer message"),
    ("audio in an assistant message", {"input": [user("q"), {"role": "assistant", "content": [audio()]}]},
     "input_audio part in an assistant message"),
    ("image in a function_call_output", {"input": [user("q"), call("a", "{}", "c1"),
                                                  {"type": "function_call_output", "call_id": "c1", "output": [image()]}]},
     "input[2].output[0] is an input_image part in a function_call_output"),
    ("input_image with a file_id only", {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "file_id only; vLLM has no files API"),
    ("input_image with a detail vLLM refuses", {"input": [{"role": "user", "content": [image(detail="max")]}]},
     "(input_image) has detail 'max'; vLLM accepts auto, low, high, original"),
    ("input_image without image_url", {"input": [{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]},
     "(input_image) needs image_url"),
    ("input_audio without data", {"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"format": "wav"}}]}]},
     "(input_audio) needs input_audio"),
    ("input_file is refused by name", {"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]},
     "input[0].content[0] is an input_file part; vLLM's chat API has no file parts"),
    ("unknown part type is named", {"input": [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}]},
     "content part of type 'video_url'"),
    ("text part without text", {"input": [{"role": "user", "content": [{"type": "input_text", "text": None}]}]},
     "(input_text) needs a string 'text'"),
    ("content part that is not an object", {"input": [{"role": "user", "content": ["hi"]}]},
     "input[0].content[0] must be an object"),
    ("empty conversation", {"input": []}, "input is empty and there are no instructions"),
    ("audio side channel naming a file", {"input": "q", "metadata": {"audio_path": "/a.wav"}},
     "metadata.audio_path names an audio file, which the vLLM adapter does not read"),
    ("audio side channel given twice", {"input": "q", "metadata": {"audio_data": "data:audio/wav;base64,AA", "audio_url": "x"}},
     "metadata.audio_data and metadata.audio_url are both set"),
    ("unknown role", {"input": [{"role": "critic", "content": "x"}]}, "'critic'"),
    ("function_call_output without call_id", {"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
    ("function_call without name", {"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "name"),
    ("item that is not an object", {"input": ["hello"]}, "input[0] must be an object"),
]


@pytest.mark.parametrize("params,fragment", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_name_the_problem(params, fragment):
    with pytest.raises(RequestConversionError) as info:
        responses_to_chat_messages(params, BASE)
    assert fragment in str(info.value)
    assert str(info.value) == "; ".join(conversation_problems(params))  # the scan finds it up front


def test_input_items_is_the_one_string_normalisation():
    assert input_items("hi") == [user("hi")]
    items = [user("a")]
    assert input_items(items) is items and input_items(None) is None
    assert responses_to_chat_messages({"input": "hi"}, BASE) == responses_to_chat_messages({"input": [user("hi")]}, BASE)


IMG_PART = {"type": "image_url", "image_url": {"url": PNG}}
MEDIA = [
    ("an image makes the content a list of chat parts, in order",
     {"input": [{"role": "user", "content": [text("look:"), image(), text("what is it?")]}]}, BASE,
     [{"role": "user", "content": [{"type": "text", "text": "look:"}, IMG_PART, {"type": "text", "text": "what is it?"}]}]),
    ("detail goes inside image_url; a null detail is left out",
     {"input": [{"role": "user", "content": [image(detail="high"), image(detail=None)]}]}, BASE,
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG, "detail": "high"}}, IMG_PART]}]),
    ("an http image URL passes through", {"input": [{"role": "user", "content": [image("https://x.test/a.png")]}]}, BASE,
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]),
    ("image_url wins over file_id", {"input": [{"role": "user", "content": [image(file_id="file-1")]}]}, BASE,
     [{"role": "user", "content": [IMG_PART]}]),
    ("input_audio passes through as vLLM's input_audio part", {"input": [{"role": "user", "content": [audio(), text("transcribe")]}]},
     BASE, [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                                         {"type": "text", "text": "transcribe"}]}]),
    ("a message without type (NeMo Gym's easy input) with an image",
     {"input": [{"role": "system", "content": "S"}, {"role": "user", "content": [image(), text("q")]}]}, BASE,
     [{"role": "system", "content": "S"}, {"role": "user", "content": [IMG_PART, {"type": "text", "text": "q"}]}]),
    ("metadata.audio_data goes in front of the last user message's text",
     {"input": [user("first"), user("Transcribe.")], "metadata": {"audio_data": "data:audio/wav;base64,AA"}}, BASE,
     [{"role": "user", "content": "first"},
      {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,AA"}},
                                   {"type": "text", "text": "Transcribe."}]}]),
    ("metadata.audio_url (NeMo Gym's asr_with_pc rows) is the same side channel, before other parts",
     {"input": [{"role": "user", "content": [image()]}], "metadata": {"audio_url": "data:audio/wav;base64,AA"}}, BASE,
     [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,AA"}}, IMG_PART]}]),
    ("audio side channel without a user message adds one",
     {"input": [{"role": "system", "content": "S"}], "metadata": {"audio_data": "data:audio/wav;base64,AA"}}, BASE,
     [{"role": "system", "content": "S"},
      {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,AA"}}]}]),
    ("the audio side channel stays on its user message over turns",
     {"input": [user("q"), call("a", "{}", "c1"), output("c1", "r")], "metadata": {"audio_data": "A"}}, BASE,
     [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "A"}}, {"type": "text", "text": "q"}]},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "r"}]),
    ("other metadata keys are task data, not audio", {"input": "q", "metadata": {"audio_duration": "3"}}, BASE,
     [{"role": "user", "content": "q"}]),
]


@pytest.mark.parametrize("params,cfg,expected", [c[1:] for c in MEDIA], ids=[c[0] for c in MEDIA])
def test_media_conversion(params, cfg, expected):
    assert responses_to_chat_messages(params, cfg) == expected
    assert conversation_problems(params) == []


def test_problems_lists_every_bad_item_and_the_converter_raises_them():
    params = {"input": [{"type": "item_reference", "id": "x"}, user("ok"), {"role": "critic", "content": "x"},
                        {"role": "system", "content": [image()]}], "instructions": 3}
    problems = conversation_problems(params)
    assert problems == [
        "responses_create_params.instructions must be a string",
        "input[0] has type 'item_reference', which the vLLM adapter does not support "
        "(supported: message, reasoning, function_call, function_call_output)",
        "input[2] has role 'critic'; supported roles: user, system, developer, assistant",
        "input[3].content[0] is an input_image part in a system message; images and audio are supported in "
        "user messages only: move it into a user message",
    ]
    with pytest.raises(RequestConversionError) as info:
        responses_to_chat_messages(params, BASE)
    assert str(info.value) == "; ".join(problems)


@pytest.mark.parametrize("params", [c[1] for c in CASES] + [c[1] for c in MEDIA], ids=[c[0] for c in CASES + MEDIA])
def test_convertible_inputs_have_no_problems(params):
    assert conversation_problems(params) == []
