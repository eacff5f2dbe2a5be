"""Per-route fault injection for the embedded resources server.

A `FaultTable` maps a route ("/verify", "/get_weather", ...) or "*" (every served route except
/_control/) to a mode and an optional count:
  "500" / "503"  that status with a JSON error body      "422"   a FastAPI-shaped validation error
  "malformed"    200 with a body that is not JSON          "drop"  close the connection, no answer
  "hang"         never answer (released when the server stops)
  "slow"         answer normally after `slow_ms`           "ok"    answer normally
A count N applies the entry to the next N requests of that route (for "*": of all routes together),
then the entry is gone; no count means until changed. A route's own entry wins over "*", so
`* = 500` plus `/verify = ok` leaves /verify working. Setting "*" replaces the whole table;
`* = ok` without a count clears it. CLI form: `ROUTE=MODE[:COUNT]` (`parse_fault_spec`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

MODES = ("500", "503", "422", "malformed", "drop", "hang", "slow", "ok")
ALL_ROUTES = "*"
_SET_KEYS = {"route", "mode", "count", "slow_ms"}


@dataclass
class Fault:
    mode: str
    remaining: int | None  # None: until changed
    slow_ms: float

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "remaining": self.remaining, "slow_ms": self.slow_ms}


def parse_fault_spec(spec: str) -> tuple[str, str, int | None]:
    """`"/verify=500:2"` -> ("/verify", "500", 2); `"*=hang"` -> ("*", "hang", None)."""
    route, sep, rest = spec.partition("=")
    if not sep or not route or not rest:
        raise ValueError(f"--fault wants ROUTE=MODE[:COUNT] (e.g. /verify=500:2), got {spec!r}")
    mode, _, count = rest.partition(":")
    if not count:
        return route, mode, None
    if not count.isdigit():
        raise ValueError(f"--fault {spec!r}: COUNT must be a positive integer, got {count!r}")
    return route, mode, int(count)


class FaultTable:
    """Which fault the next request of each route gets (see module doc)."""

    def __init__(self, routes: Iterable[str], default_slow_ms: float = 2000.0) -> None:
        self.routes = tuple(routes)
        self.default_slow_ms = float(default_slow_ms)
        self._table: dict[str, Fault] = {}
        self.injected: dict[str, Counter[str]] = {}

    def set(self, route: str, mode: str, count: int | None = None, slow_ms: float | None = None) -> None:
        """Install one entry; ValueError (with the allowed values) on anything unsupported."""
        if route != ALL_ROUTES and route not in self.routes:
            raise ValueError(f"unknown route {route!r}; use '*' or one of {list(self.routes)}")
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {list(MODES)}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer (omit it for 'until changed'), got {count!r}")
        if slow_ms is not None:
            if mode != "slow":
                raise ValueError(f"slow_ms only applies to mode 'slow', not {mode!r}")
            if isinstance(slow_ms, bool) or not isinstance(slow_ms, (int, float)) or slow_ms < 0:
                raise ValueError(f"slow_ms must be a number >= 0, got {slow_ms!r}")
        fault = Fault(mode, count, float(self.default_slow_ms if slow_ms is None else slow_ms))
        if route == ALL_ROUTES:
            self._table.clear()
            if mode == "ok" and count is None:
                return
        self._table[route] = fault

    def set_from_body(self, body: Any) -> None:
        """Apply a `POST /_control/faults` body: {"route", "mode", "count"?, "slow_ms"?}."""
        if not isinstance(body, Mapping):
            raise ValueError('body must be a JSON object {"route": ..., "mode": ..., "count"?: N, "slow_ms"?: N}')
        unknown = sorted(set(body) - _SET_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {sorted(_SET_KEYS)}")
        if "route" not in body or "mode" not in body:
            raise ValueError("both 'route' and 'mode' are required")
        self.set(str(body["route"]), str(body["mode"]), body.get("count"), body.get("slow_ms"))

    def clear(self) -> None:
        self._table.clear()

    def take(self, route: str) -> Fault | None:
        """The fault for one request of `route` (consuming one count), None to answer normally."""
        key = route if route in self._table else ALL_ROUTES
        fault = self._table.get(key)
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._table[key]
        if fault.mode == "ok":
            return None
        self.injected.setdefault(route, Counter())[fault.mode] += 1
        return fault

    def table(self) -> dict[str, dict[str, Any]]:
        return {route: fault.describe() for route, fault in self._table.items()}

    def stats(self) -> dict[str, Any]:
        return {
            "faults": self.table(),
            "faults_injected": {route: dict(c) for route, c in self.injected.items()},
            "faults_injected_total": sum(sum(c.values()) for c in self.injected.values()),
        }
