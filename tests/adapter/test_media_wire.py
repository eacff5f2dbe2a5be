"""Image and audio prompts through the adapter to the embedded server on 127.0.0.1: the rollout
runs, the prompt carries the media placeholder, token ids continue across calls, and the
``/tokenize`` fallback renders exactly the prompt the chat endpoint used."""

from __future__ import annotations

import pytest
from openai.types.responses import Response

from gym_rollouts.adapter.messages import RequestConversionError
from gym_rollouts.embedded import EmbeddedConfig
from gym_rollouts.embedded.tokenizer import AUDIO_TOKEN, IMAGE_TOKEN, SPECIAL_IDS

from adapter_harness import ARITH_ROW, SYSTEM, calls_with_ids, embedded_policy, rollout

PNG = "data:image/png;base64,iVBORw0KGgo="
IMAGE_ROW = {
    **ARITH_ROW,
    "responses_create_params": {
        **ARITH_ROW["responses_create_params"],
        "input": [{"role": "system", "content": SYSTEM},
                  {"type": "message", "role": "user", "content": [
                      {"type": "input_image", "image_url": PNG, "detail": "auto"},
                      {"type": "input_text", "text": "What is (43 * 21) + 14?"}]}],
    },
}


def prompts(outcome):
    return [(c["prompt_token_ids"], c["generation_token_ids"]) for c in calls_with_ids(outcome.response)]


async def test_an_image_rollout_keeps_token_continuity():
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        outcome, session = await rollout(policy, IMAGE_ROW)
    Response.model_validate(outcome.response)
    assert outcome.stop_reason == "answer" and outcome.model_calls == 2 and outcome.reward == 1.0
    calls = prompts(outcome)
    assert len(calls) == 2
    assert all(p.count(SPECIAL_IDS[IMAGE_TOKEN]) == 1 for p, _ in calls)
    assert session.continuity.summary()["continuous"] is True


async def test_tokenize_fallback_renders_the_image_prompt_like_the_chat_endpoint():
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        reference, _ = await rollout(policy, IMAGE_ROW)
    async with embedded_policy(EmbeddedConfig(return_token_ids_supported=False),
                               return_token_id_information=True) as (policy, _):
        outcome, session = await rollout(policy, IMAGE_ROW)
        assert policy.tokenize_fallbacks == 2
    assert prompts(outcome) == prompts(reference)
    assert session.continuity.summary()["continuous"] is True


async def test_the_metadata_audio_side_channel_reaches_the_model():
    params = {"input": [{"role": "user", "content": "Transcribe the audio."}], "max_output_tokens": 64,
              "metadata": {"audio_data": "data:audio/wav;base64,UklGRg=="}}
    async with embedded_policy(return_token_id_information=True) as (policy, _):
        turn = await policy.session().respond(params)
    assert turn.prompt_token_ids.count(SPECIAL_IDS[AUDIO_TOKEN]) == 1


async def test_completions_mode_refuses_an_image_before_sending():
    async with embedded_policy(use_completions_api=True) as (policy, server):
        before = server.requests["completions"]
        with pytest.raises(RequestConversionError, match="cannot carry images or audio"):
            await policy.session().respond({"input": IMAGE_ROW["responses_create_params"]["input"][1:]})
        assert server.requests["completions"] == before
