"""A blocking client for the `/_control/` routes of a running embedded resources server.

For tests: `ctl = ResourcesControl(proc.url)`; `ctl.set_fault("/verify", "500", count=2)`,
`ctl.clear_faults()`, `ctl.stats()`, `ctl.requests(limit=5)`, `ctl.clear_requests()`. Standard
library only (urllib), so it works from sync tests and from a thread of async ones. A refused
control request raises `ControlError` with the server's message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ControlError(RuntimeError):
    """The server refused a control request (the message says why)."""


class ResourcesControl:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None

    def set_fault(self, route: str, mode: str, count: int | None = None, slow_ms: float | None = None) -> dict:
        body: dict[str, Any] = {"route": route, "mode": mode}
        if count is not None:
            body["count"] = count
        if slow_ms is not None:
            body["slow_ms"] = slow_ms
        return self._call("POST", "/_control/faults", body)["faults"]

    def faults(self) -> dict:
        return self._call("GET", "/_control/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_control/faults")

    def stats(self) -> dict:
        return self._call("GET", "/_control/stats")

    def requests(self, limit: int | None = None) -> list[dict]:
        return self._call("GET", "/_control/requests" + ("" if limit is None else f"?limit={int(limit)}"))

    def clear_requests(self) -> int:
        return self._call("DELETE", "/_control/requests")["cleared"]
