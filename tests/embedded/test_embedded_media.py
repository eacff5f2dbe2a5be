"""Image and audio parts in chat messages: the embedded template renders each as one placeholder
token (as a multimodal model's processor inserts its media tokens), /tokenize agrees with the chat
endpoint, and media it could not load is a 400 as in vLLM."""

from __future__ import annotations

import pytest

from gym_rollouts.embedded.template import ChatTemplate, TemplateError, content_text
from gym_rollouts.embedded.tokenizer import AUDIO_TOKEN, IMAGE_TOKEN, SPECIAL_IDS, ByteTokenizer

tok = ByteTokenizer()
PNG = "data:image/png;base64,iVBORw0KGgo="
IMAGE = {"type": "image_url", "image_url": {"url": PNG}}
AUDIO = {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,UklGRg=="}}
INPUT_AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


def text(t):
    return {"type": "text", "text": t}


RENDER = [
    ("text parts join with a newline", [text("a"), text("b")], "a\nb"),
    ("an image is one placeholder, in place", [text("look"), IMAGE, text("what?")], f"look\n{IMAGE_TOKEN}\nwhat?"),
    ("image with detail", [{"type": "image_url", "image_url": {"url": PNG, "detail": "high"}}], IMAGE_TOKEN),
    ("Responses-style input_image (vLLM accepts it too)", [{"type": "input_image", "image_url": PNG}], IMAGE_TOKEN),
    ("audio_url and input_audio", [AUDIO, INPUT_AUDIO, text("transcribe")], f"{AUDIO_TOKEN}\n{AUDIO_TOKEN}\ntranscribe"),
    ("two images", [IMAGE, IMAGE], f"{IMAGE_TOKEN}\n{IMAGE_TOKEN}"),
]


@pytest.mark.parametrize("parts,expected", [c[1:] for c in RENDER], ids=[c[0] for c in RENDER])
def test_content_text_renders_media_placeholders(parts, expected):
    assert content_text(parts) == expected


BAD = [
    ("image without url", {"type": "image_url", "image_url": {}}),
    ("image with an empty url", {"type": "image_url", "image_url": {"url": ""}}),
    ("input_audio without data", {"type": "input_audio", "input_audio": {"format": "wav"}}),
    ("a file part", {"type": "file", "file": {"file_data": "x"}}),
]


@pytest.mark.parametrize("part", [c[1] for c in BAD], ids=[c[0] for c in BAD])
def test_media_that_cannot_load_is_refused(part):
    with pytest.raises(TemplateError):
        content_text([part])


def test_each_placeholder_is_one_special_token():
    for token in (IMAGE_TOKEN, AUDIO_TOKEN):
        assert tok.encode(f"a{token}b") == [ord("a"), SPECIAL_IDS[token], ord("b")]
        assert tok.decode([SPECIAL_IDS[token]]) == token


def test_media_prompt_is_prefix_stable():
    t = ChatTemplate()
    first = [{"role": "user", "content": [IMAGE, text("What is 2+3?")]}]
    reply = {"role": "assistant", "content": "The answer is 5."}
    p1 = t.render(first)
    p2 = t.render(first + [reply, {"role": "user", "content": "thanks"}])
    assert p2.startswith(p1 + "The answer is 5.<|im_end|>")


async def test_chat_with_an_image_answers_and_tokenize_agrees(wire):
    messages = [{"role": "system", "content": "S"},
                {"role": "user", "content": [text("What is 2+3?"), IMAGE]}]
    reply = await wire.chat(messages=messages, return_token_ids=True, logprobs=True, top_logprobs=0)
    assert reply["choices"][0]["message"]["content"] == "The answer is 5."
    prompt_ids = reply["prompt_token_ids"]
    assert prompt_ids.count(SPECIAL_IDS[IMAGE_TOKEN]) == 1
    assert reply["usage"]["prompt_tokens"] == len(prompt_ids)
    status, tokenized = await wire.post("/tokenize", {"messages": messages, "add_generation_prompt": True})
    assert status == 200 and tokenized["tokens"] == prompt_ids


async def test_chat_with_audio_parts(wire):
    messages = [{"role": "user", "content": [AUDIO, INPUT_AUDIO, text("Transcribe.")]}]
    reply = await wire.chat(messages=messages, return_token_ids=True)
    assert reply["prompt_token_ids"].count(SPECIAL_IDS[AUDIO_TOKEN]) == 2
    status, tokenized = await wire.post("/tokenize", {"messages": messages})
    assert status == 200 and tokenized["tokens"] == reply["prompt_token_ids"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokenize"])
async def test_an_image_without_url_is_a_400(wire, path):
    status, reply = await wire.post(path, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
    assert status == 400 and "image_url" in reply["error"]["message"]
