"""Helpers shared by the embedded-resources tests (a uniquely named module, importable from them)."""

from __future__ import annotations

from typing import Any

import aiohttp

from gym_rollouts.embedded_resources import cookie_name

NAME = "wire_env"
COOKIE = cookie_name(NAME)


def response_obj(output: list[dict] | None = None, **over: Any) -> dict:
    """A Responses object with the fields NeMo Gym's verify model requires."""
    obj = {"id": "resp_1", "object": "response", "created_at": 0, "model": "m", "output": output or [],
           "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    obj.update(over)
    return obj


def message(text: str) -> dict:
    return {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def call(name: str = "get_weather") -> dict:
    return {"type": "function_call", "name": name, "arguments": "{}", "call_id": "c1", "id": "fc_1"}


ROW = {"responses_create_params": {"input": [{"role": "user", "content": "hi"}]}}


class Client:
    """POST/GET against one server; `cookie` (the value) is sent when given and updated from
    every Set-Cookie, so one Client is one rollout's session."""

    def __init__(self, session: aiohttp.ClientSession, url: str, cookie: str | None = None) -> None:
        self.session, self.url, self.cookie = session, url, cookie
        self.last_set_cookie: str | None = None

    async def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                      headers: dict | None = None, timeout: float | None = None) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if self.cookie is not None:
            hdrs["Cookie"] = f"{COOKIE}={self.cookie}"
        kw: dict[str, Any] = {"headers": hdrs}
        if data is not None:
            kw["data"] = data
        elif body is not None:
            kw["json"] = body
        if timeout is not None:
            kw["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(method, self.url + path, **kw) as resp:
            morsel = resp.cookies.get(COOKIE)
            self.last_set_cookie = None if morsel is None else morsel.value
            if morsel is not None:
                self.cookie = morsel.value
            text = await resp.text()
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)
