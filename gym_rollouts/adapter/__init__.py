"""The vLLM adapter: Responses-API items <-> vLLM chat/completions bodies (pure functions),
plus ``VLLMPolicy``, the async client that drives one model call through the router."""
