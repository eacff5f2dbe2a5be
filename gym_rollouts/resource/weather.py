"""``weather``: one ``get_weather(city)`` tool and a trivial verifier, like NeMo Gym's
single-tool example. Reward 1.0 when the model called the tool and then answered."""

from __future__ import annotations

import zlib
from typing import Any, Mapping

from gym_rollouts.resource.base import Resource, ToolCallError, Verification, called_tools, final_text

GET_WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
_CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "cold", "warm")


class WeatherResource(Resource):
    name = "weather"

    def tools(self) -> list[dict[str, Any]]:
        return [GET_WEATHER_TOOL]

    async def call_tool(self, state: Any, name: str, arguments: Mapping[str, Any]) -> str:
        if name != "get_weather":
            raise ToolCallError(f"unknown tool '{name}' (available: get_weather)")
        city = arguments.get("city")
        if not isinstance(city, str) or not city.strip():
            raise ToolCallError("get_weather needs a non-empty string argument 'city'")
        city = city.strip()
        key = zlib.crc32(city.lower().encode())  # the same city always gets the same weather
        return f"{_CONDITIONS[key % len(_CONDITIONS)]}, {10 + key // len(_CONDITIONS) % 20} C in {city}"

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        ok = "get_weather" in called_tools(response) and bool(final_text(response).strip())
        return Verification(1.0 if ok else 0.0)
