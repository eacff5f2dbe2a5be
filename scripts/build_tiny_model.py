"""Build the tiny, random-weight chat model that the real-vLLM test tier serves.

Run it with the interpreter of ``.venv-vllm`` (it needs torch, transformers and tokenizers);
``scripts/setup_real_vllm.sh`` does that. Nothing is downloaded: the tokenizer is trained on the
Python standard library sources of the running interpreter, and the weights are random (fixed
seed). The result is deterministic for a given interpreter and library set.

What comes out (``--out``, default ``.cache/tiny-model``):
  - a byte-level BPE tokenizer (vocab 4096) with special tokens ``<|endoftext|>`` (pad),
    ``<|im_start|>``, ``<|im_end|>`` (eos) and the plain added tokens ``<tool_call>``,
    ``</tool_call>``, ``<tool_response>``, ``</tool_response>``, ``<think>``, ``</think>``
    (added but not "special", so they survive ``skip_special_tokens`` and show in text);
  - a Hermes/Qwen-style chat template (written for this project, see CHAT_TEMPLATE);
  - a ``Qwen2ForCausalLM`` with hidden 128, 2 layers, 4 heads, 2 KV heads (head size 32, vLLM's CPU
    attention wants >= 32), float32, random weights except that the output head prefers long
    tokens (see ``prefer_long_tokens``: forced text then comes out canonically tokenized, and
    unconstrained generation never stops before max_tokens);
  - ``generation_config.json`` with only the token ids (no sampling defaults), and
    ``build_stamp.json`` (a hash of this file + library versions) for ``--if-needed``.

The chat template is the contract the tests and the token-in/token-out continuity rely on:
  system   -> ``<|im_start|>system\\n{content}<|im_end|>\\n`` (tools, when given, are listed in
              the system turn, one JSON object per line inside ``<tools>...</tools>``)
  user     -> ``<|im_start|>user\\n{content}<|im_end|>\\n``
  assistant-> ``<|im_start|>assistant\\n`` + [``<think>{reasoning}</think>``] + content
              + tool calls, each ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``,
              separated by ``\\n`` + ``<|im_end|>\\n``. Reasoning comes from ``reasoning`` or
              ``reasoning_content``. Nothing is stripped or re-spaced, so a generation fed back
              renders to the same text it was generated as.
  tool     -> consecutive tool messages form one user turn, each wrapped as
              ``<tool_response>\\n{content}\\n</tool_response>``, joined by ``\\n``.
  generation prompt -> ``<|im_start|>assistant\\n``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

VOCAB_SIZE = 4096
SEED = 1234
CORPUS_BYTES = 4_000_000

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PLAIN_ADDED_TOKENS = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Whitespace is explicit: every tag trims, newlines are written as '\n' literals.
CHAT_TEMPLATE = r"""
{%- macro text(c) -%}
  {%- if c is none -%}
  {%- elif c is string -%}{{- c -}}
  {%- else -%}{%- for part in c -%}{%- if part.text is defined -%}{{- part.text -}}{%- endif -%}{%- endfor -%}
  {%- endif -%}
{%- endmacro -%}
{%- set start = 0 -%}
{%- if tools -%}
  {{- '<|im_start|>system\n' -}}
  {%- if messages and messages[0].role == 'system' -%}
    {{- text(messages[0].content) + '\n\n' -}}
    {%- set start = 1 -%}
  {%- endif -%}
  {{- 'Tools you can call are described below, one JSON object per line:\n<tools>' -}}
  {%- for tool in tools -%}
    {{- '\n' -}}{%- if tool.function is defined -%}{{- tool.function | tojson -}}{%- else -%}{{- tool | tojson -}}{%- endif -%}
  {%- endfor -%}
  {{- '\n</tools>\nTo call a tool, answer with one block per call, blocks separated by a newline:\n<tool_call>\n{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n</tool_call><|im_end|>\n' -}}
{%- endif -%}
{%- set ns = namespace(in_tool_turn=false) -%}
{%- for message in messages[start:] -%}
  {%- if message.role == 'tool' -%}
    {%- if ns.in_tool_turn -%}{{- '\n' -}}{%- else -%}{{- '<|im_start|>user\n' -}}{%- endif -%}
    {{- '<tool_response>\n' + text(message.content) + '\n</tool_response>' -}}
    {%- set ns.in_tool_turn = true -%}
    {%- if loop.last or loop.nextitem.role != 'tool' -%}
      {{- '<|im_end|>\n' -}}
      {%- set ns.in_tool_turn = false -%}
    {%- endif -%}
  {%- elif message.role == 'assistant' -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if message.reasoning is defined and message.reasoning is not none -%}
      {{- '<think>' + message.reasoning + '</think>' -}}
    {%- elif message.reasoning_content is defined and message.reasoning_content is not none -%}
      {{- '<think>' + message.reasoning_content + '</think>' -}}
    {%- endif -%}
    {{- text(message.content) -}}
    {%- if message.tool_calls -%}
      {%- for call in message.tool_calls -%}
        {%- set fn = call.function if call.function is defined else call -%}
        {%- if not loop.first -%}{{- '\n' -}}{%- endif -%}
        {{- '<tool_call>\n{"name": ' + (fn.name | tojson) + ', "arguments": ' -}}
        {%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
        {{- '}\n</tool_call>' -}}
      {%- endfor -%}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\n' + text(message.content) + '<|im_end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
""".strip()


def log(msg: str) -> None:
    print(f"[build_tiny_model] {msg}", flush=True)


def corpus_files() -> list[Path]:
    """Python stdlib sources, in a fixed order, up to CORPUS_BYTES in total."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        files.append(path)
        total += path.stat().st_size
        if total >= CORPUS_BYTES:
            break
    if total < 200_000:
        raise SystemExit(f"too little training text under {stdlib} ({total} bytes)")
    return files


def build_stamp() -> dict:
    """What the output depends on (read without importing the heavy libraries)."""
    from importlib import metadata

    return {
        "script_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        **{dist: metadata.version(dist) for dist in ("torch", "transformers", "tokenizers")},
    }


def train_tokenizer(files: list[Path]):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS + PLAIN_ADDED_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def lines():
        for path in files:
            yield path.read_text(encoding="utf-8", errors="replace")

    tok.train_from_iterator(lines(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN_ADDED_TOKENS])
    return tok


def wrap_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, eos_id: int, pad_id: int, scores: list[float]):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    prefer_long_tokens(model, scores)
    gen = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    return model, gen


def token_scores(fast) -> list[float]:
    """Per token id: how much the model should like it (see prefer_long_tokens)."""
    scores = []
    for tok_id in range(VOCAB_SIZE):
        text = fast.convert_ids_to_tokens(tok_id)
        if text == EOS_TOKEN:
            scores.append(-10.0)
        elif text in SPECIAL_TOKENS:
            scores.append(-20.0)
        else:
            scores.append(float(len(fast.convert_tokens_to_string([text]))))
    return scores


def prefer_long_tokens(model, scores: list[float], dim: int = 0, alpha: float = 0.5) -> None:
    """Make the random model rank tokens by length, whatever the input.

    Residual dimension ``dim`` is a constant 1.0 (every embedding has it, no layer writes to it),
    and the output head reads it with weight ``alpha * score``. So, among the tokens a grammar
    allows, greedy decoding takes the longest one: forced text comes out tokenized (nearly) the
    way the tokenizer itself would split it, ``<tool_call>``/``<think>`` as single tokens, and
    token-in/token-out continuity can hold. The other dimensions stay random and break ties.
    The special tokens score low, so unconstrained generation never stops on its own
    (finish_reason "length"), and with a grammar that is complete ``<|im_end|>`` wins.
    """
    import torch

    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb[:, dim] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[dim, :] = 0.0
            layer.mlp.down_proj.weight[dim, :] = 0.0
        head = model.lm_head.weight
        head[:, dim] = alpha * torch.tensor(scores, dtype=head.dtype)


def self_check(out: Path) -> None:
    """Reload what was written and check the tokens, the template contract and the head."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        ids = torch.tensor([tok.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")])
        logits = model(ids).logits[0, -1]
    longest = max(range(VOCAB_SIZE), key=lambda i: len(tok.convert_tokens_to_string([tok.convert_ids_to_tokens(i)])))
    eos_id = tok.convert_tokens_to_ids(EOS_TOKEN)
    if int(logits.argmax()) != longest or logits[eos_id] > logits.median():
        raise SystemExit("the output head does not prefer long tokens as intended")
    vocab = tok.get_vocab()
    for t in SPECIAL_TOKENS + PLAIN_ADDED_TOKENS:
        ids = tok.encode(t, add_special_tokens=False)
        if t not in vocab or ids != [vocab[t]]:
            raise SystemExit(f"token {t!r} is not a single vocabulary entry (encodes as {ids})")
    if tok.eos_token != EOS_TOKEN:
        raise SystemExit(f"eos token is {tok.eos_token!r}, want {EOS_TOKEN!r}")
    # Plain added tokens must survive skip_special_tokens (vLLM's default detokenization).
    sample = "<think>hm</think>ok<tool_call>\n{}\n</tool_call>"
    if tok.decode(tok.encode(sample), skip_special_tokens=True) != sample:
        raise SystemExit("the plain added tokens do not survive skip_special_tokens decoding")

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}]
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "reasoning": "r",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "done"},
    ]
    text = tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    want_tail = (
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n<think>r</think><tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\ndone<|im_end|>\n<|im_start|>assistant\n"
    )
    if not text.startswith("<|im_start|>system\nsys\n\n") or not text.endswith(want_tail):
        raise SystemExit(f"chat template renders unexpectedly:\n{text}")


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=repo / ".cache" / "tiny-model")
    ap.add_argument("--if-needed", action="store_true",
                    help="do nothing when --out holds a model built by this exact script and libraries")
    args = ap.parse_args(argv)

    out: Path = args.out.resolve()
    t0 = time.monotonic()
    stamp = build_stamp()
    stamp_path = out / "build_stamp.json"
    if args.if_needed and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                log(f"{out} is up to date, nothing to do")
                return 0
        except ValueError:
            pass

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    files = corpus_files()
    log(f"training a {VOCAB_SIZE}-token byte-level BPE on {len(files)} stdlib files")
    tok = train_tokenizer(files)
    fast = wrap_tokenizer(tok)
    vocab = fast.get_vocab()
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"tokenizer has {len(vocab)} entries, want {VOCAB_SIZE}")

    log("building the random-weight Qwen2ForCausalLM")
    model, gen = build_model(VOCAB_SIZE, vocab[EOS_TOKEN], vocab[PAD_TOKEN], token_scores(fast))

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    gen.save_pretrained(str(tmp))
    fast.save_pretrained(str(tmp))
    self_check(tmp)
    (tmp / "build_stamp.json").write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")

    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.iterdir())
    log(f"wrote {out} ({size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
