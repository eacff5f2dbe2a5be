"""Start-up checks against the fleet: reachability, ``/v1`` in the base URL, the model id.

Reads ``/v1/models`` of every server once: the served ids (the configured model must be among
them; without one configured, a single served model is used) and ``max_model_len`` (the smallest
across the fleet, used to clamp ``max_tokens``).

With ``allow_down`` (the engine), servers that do not answer (unreachable, or ``/models`` answering
5xx) do not stop the run: each gets a warning naming its error and starts *down* (``FleetInfo.down``);
the router lets it join once ``join_check`` passes (it answers and serves the run's model, with a
``max_model_len`` no smaller than the run's). The run is refused only when no server answers, with
the error of each. Any other problem (a wrong path, another model) is refused as before.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping

import orjson

from gym_rollouts.errors import StartupError, TransportError
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetInfo:
    base_urls: tuple[str, ...]
    model_name: str
    max_model_len: int | None
    down: Mapping[str, str] = field(default_factory=dict)  # base URL -> why it did not answer at start-up


class ServerDownError(StartupError):
    """A server that does not answer (yet): unreachable, or ``/models`` answering 5xx."""


async def _models(transport: HttpTransport, base_url: str, timeout_s: float = 15.0) -> dict[str, Any] | None:
    """The ``/models`` answer of ``base_url``, or None when that path does not exist (404)."""
    status, raw = await transport.get(base_url.rstrip("/") + "/models", timeout_s=timeout_s)
    if status == 404:
        return None
    if status != 200:
        error = ServerDownError if status >= 500 else StartupError
        raise error(f"{base_url}/models answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}",
                    status=status)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StartupError(f"{base_url}/models did not answer JSON; is this a vLLM server?") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise StartupError(f"{base_url}/models answered an unexpected shape; is this a vLLM server?")
    return data


async def check_server(transport: HttpTransport, base_url: str,
                       timeout_s: float = 15.0) -> tuple[str, dict[str, Any]]:
    """(the usable base URL, its /models answer); fixes a missing ``/v1`` with a warning."""
    url = base_url.rstrip("/")
    try:
        data = await _models(transport, url, timeout_s)
        if data is None and not url.endswith("/v1"):
            data = await _models(transport, url + "/v1", timeout_s)
            if data is not None:
                log.warning("policy_base_url %s lacks /v1; using %s/v1 (put /v1 in your config)", url, url)
                url = url + "/v1"
    except TransportError as exc:
        raise ServerDownError(
            f"cannot reach the vLLM server at {url} ({exc.kind}): {exc}. Is it running? "
            f"Check with: curl {url.removesuffix('/v1')}/health"
        ) from None
    if data is None:
        hint = "" if url.endswith("/v1") else f" The base URL must end with /v1, e.g. {url}/v1."
        raise StartupError(f"{url}/models was not found (HTTP 404); is this a vLLM OpenAI server?{hint}")
    return url, data


def _entries(data: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    listed = (data or {}).get("data")
    return [m for m in listed if isinstance(m, Mapping)] if isinstance(listed, list) else []


def served_ids(data: Mapping[str, Any] | None) -> list[str]:
    """The model ids of one ``/models`` answer (None or a bad shape: none)."""
    return [str(m.get("id")) for m in _entries(data)]


def model_lengths(data: Mapping[str, Any] | None) -> dict[str, int]:
    """``max_model_len`` by model id, for the entries of one ``/models`` answer that report it."""
    return {str(m.get("id")): m["max_model_len"] for m in _entries(data) if isinstance(m.get("max_model_len"), int)}


def model_entry(data: Mapping[str, Any] | None, model: str | None) -> Mapping[str, Any]:
    """The ``/models`` entry of ``model`` ({} when not served)."""
    return next((m for m in _entries(data) if str(m.get("id")) == model), {})


def choose_model(wanted: str | None, served: Iterable[str]) -> str | None:
    """The model a run uses: the configured one, else the single served id; None when several
    are served and none is configured (whether ``wanted`` is served is checked separately)."""
    if wanted:
        return wanted
    every = sorted(set(served))
    return every[0] if len(every) == 1 else None


def closest_model(wanted: str, served_ids: list[str]) -> str | None:
    """The served id most like ``wanted`` (a typo, a missing org prefix), or None."""
    close = difflib.get_close_matches(wanted, served_ids, n=1, cutoff=0.3)
    return close[0] if close else None


def _choose_model(wanted: str | None, served: dict[str, list[str]]) -> str:
    every = sorted({m for ids in served.values() for m in ids})
    if wanted is None:
        chosen = choose_model(None, every)
        if chosen is not None:
            return chosen
        raise StartupError(f"the servers serve several models ({', '.join(every)}); set policy_model_name")
    missing = [url for url, ids in served.items() if wanted not in ids]
    if missing:
        close = closest_model(wanted, every)
        hint = f" Closest match: {close}." if close else ""
        raise StartupError(
            f"policy_model_name '{wanted}' is not served by {', '.join(missing)}; served ids: "
            f"{', '.join(every) or '(none)'}.{hint} Use exactly the id vLLM shows in /v1/models."
        )
    return wanted


async def discover_fleet(transport: HttpTransport, base_urls: tuple[str, ...], wanted_model: str | None, *,
                         allow_down: bool = False) -> FleetInfo:
    urls: list[str] = []
    served: dict[str, list[str]] = {}
    lengths: dict[str, dict[str, int]] = {}
    down: dict[str, str] = {}
    for base in base_urls:
        try:
            url, data = await check_server(transport, base)
        except ServerDownError as exc:
            if not allow_down:
                raise
            url = base.rstrip("/")
            down[url] = str(exc)
            urls.append(url)
            continue
        urls.append(url)
        served[url] = served_ids(data)
        lengths[url] = model_lengths(data)
    if not served:  # allow_down, and nobody answered
        if len(down) == 1:
            raise ServerDownError(next(iter(down.values())))
        raise ServerDownError(f"no vLLM server answered: {'; '.join(down.values())}")
    model = _choose_model(wanted_model, served)
    known = [lengths[u][model] for u in served if model in lengths[u]]
    if len(set(known)) > 1:
        log.warning("servers disagree on max_model_len for %s: %s; using the smallest", model, sorted(set(known)))
    for url, reason in down.items():
        log.warning("server %s does not answer; the run starts without it and it joins once it answers "
                    "(%s)", url, reason)
    return FleetInfo(tuple(urls), model, min(known) if known else None, down)


def join_check(transport: HttpTransport, model: str, max_model_len: int | None,
               timeout_s: float = 15.0) -> Callable[[str], Awaitable[str]]:
    """The router's check for a server that was down at start-up: returns its usable base URL once
    it answers and serves ``model``; raises ``TransportError`` while it does not answer and
    ``StartupError`` when it cannot serve this run (another model, a smaller ``max_model_len``, a
    wrong path): it then stays out."""

    async def check(base_url: str) -> str:
        try:
            url, data = await check_server(transport, base_url, timeout_s)
        except ServerDownError as exc:
            raise TransportError(str(exc), server=base_url) from None
        ids = served_ids(data)
        if model not in ids:
            raise StartupError(f"it serves {', '.join(ids) or 'no model'}, not this run's {model}")
        length = model_lengths(data).get(model)
        if max_model_len is not None and length is not None and length < max_model_len:
            raise StartupError(f"its max_model_len {length} is below this run's {max_model_len} (the smallest "
                               f"of the servers that answered at start-up)")
        return url

    return check


__all__ = ["FleetInfo", "ServerDownError", "discover_fleet", "join_check", "check_server", "closest_model",
           "choose_model", "served_ids", "model_lengths", "model_entry"]
