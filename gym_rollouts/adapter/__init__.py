"""The vLLM adapter: Responses-API items <-> vLLM chat/completions bodies (pure functions),
plus ``VLLMPolicy``, the async client that drives one model call through the router, and
``open_policy`` which wires it to a fleet. Behaviour and differences from NeMo Gym's vllm_model:
docs/vllm_adapter.md."""
