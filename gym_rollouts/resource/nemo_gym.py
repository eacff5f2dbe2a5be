"""``nemo_gym``: a remote NeMo Gym resources server (an environment) spoken to over HTTP.

What one rollout does, as NeMo Gym's simple agent does it:

- ``seed``: ``POST /seed_session`` with the whole row (indices included); the session cookie it
  sets is kept in the rollout's state and sent on every later call of that rollout, only that one;
- each function call of the model: ``POST /<tool>`` with the parsed arguments; the answer's body
  text is the ``function_call_output``. A 4xx answer (422: FastAPI refused the arguments; 404: no
  such tool) is the model's mistake: its body goes back to the model as the output, like NeMo
  Gym's agent does. Protocol routes (``seed_session``, ``verify``, ...) are never called as tools;
- ``verify``: ``POST /verify`` with the row plus ``response`` -> ``reward`` (a number, or the
  attempt fails: never a silent 0) and the extra fields ``/verify`` adds (NeMo Gym writes them
  into the output row).

Requests go through a ``Dispatcher`` over the environment's replica URLs: sticky per rollout,
least loaded, health-probed on ``GET /``, retried with the run's budgets and backoff (connect,
disconnect, timeout, 429/5xx, a 2xx body that is not JSON), each attempt bounded by ``timeout_s``;
at most ``max_in_flight`` requests are in flight to the environment. A call that still fails
raises ``EnvironmentCallError`` naming the environment, the call and the server; the engine
records the attempt as failed. ``close`` drops the rollout's cookies and server affinity whatever
happened. Tools served come from the server's ``/openapi.json`` (FastAPI publishes it); a server
without one cannot say, and the tool check says what it did not check.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from dataclasses import dataclass, field
from collections.abc import Mapping  # isinstance() on it is far cheaper than on typing.Mapping
from typing import Any

import orjson

from gym_rollouts.errors import (ConfigError, EnvironmentCallError, GymRolloutsError, MalformedReplyError,
                                 ServerStatusError, StartupError, TransportError)
from gym_rollouts.resource.base import Resource, ResourceContext, Verification
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import Answer, HttpTransport, error_message

log = logging.getLogger(__name__)

PROTOCOL_ROUTES = frozenset({"seed_session", "verify", "aggregate_metrics", "mcp"})
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_TIMEOUT_S = 600.0
CHECK_TIMEOUT_S = 15.0


def normalize_urls(value: Any, where: str) -> tuple[str, ...]:
    """One environment URL or a list of them (replicas), checked and without trailing slashes."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not items:
        raise ConfigError(f"{where} must be an http(s) URL or a list of them, got {value!r}")
    urls = []
    for item in items:
        url = str(item).strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: {item!r} is not an http(s) URL (expected e.g. http://127.0.0.1:12001)")
        urls.append(url)
    return tuple(urls)


def _request_schema(doc: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """The JSON schema of ``POST path``'s body (a ``#/components/schemas/...`` reference resolved)."""
    try:
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return {}
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        schema = (doc.get("components") or {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return schema if isinstance(schema, dict) else {}


def required_row_fields(doc: Any) -> frozenset[str]:
    """Top-level row fields the environment's ``/seed_session`` and ``/verify`` bodies require
    (FastAPI publishes them in its OpenAPI document); ``response`` is ours to add."""
    if not isinstance(doc, dict):
        return frozenset()
    fields: set[str] = set()
    for path in ("/seed_session", "/verify"):
        required = _request_schema(doc, path).get("required")
        if isinstance(required, list):
            fields.update(str(f) for f in required)
    return frozenset(fields - {"response"})


def tools_from_openapi(doc: Any) -> frozenset[str] | None:
    """Tool names of a resources server from its OpenAPI document: every POST path of one segment
    that is not a protocol route. None when the document has no ``paths``."""
    paths = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(paths, dict):
        return None
    names = set()
    for path, methods in paths.items():
        name = str(path).strip("/")
        if isinstance(methods, dict) and "post" in methods and _TOOL_NAME.fullmatch(name) and name not in PROTOCOL_ROUTES:
            names.add(name)
    return frozenset(names)


def for_environment(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row as sent to the environment: null ``responses_create_params`` fields left out.
    NeMo Gym's full row dumps write every unset request field as null (its example rollouts
    files), and its environments' request schema refuses null for some of them
    (``parallel_tool_calls``, ``tool_choice``); a field left out means its default, as the null meant."""
    params = row.get("responses_create_params")
    if isinstance(params, dict) and any(v is None for v in params.values()):
        return {**row, "responses_create_params": {k: v for k, v in params.items() if v is not None}}
    return row


@dataclass
class EnvSession:
    """One rollout's side of the environment: its routing key and the cookies the server set."""

    key: str
    cookies: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    def header(self) -> dict[str, str] | None:
        if not self.cookies:
            return None
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())}


class NemoGymEnvironment(Resource):
    """A NeMo Gym resources server (one or more replica URLs of the same environment)."""

    name = "nemo_gym"

    def __init__(self, *, url: Any = None, head_url: Any = None, name: str | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if head_url is not None and url is None:
            raise ConfigError("resource.params.head_url is resolved by the run's environment table, "
                              "not by one environment (see README: Bring your NeMo Gym environments)")
        if url is None:
            raise ConfigError("resource=nemo_gym needs resource.params.url=http://host:port (a list = replicas) "
                              "or resource.params.head_url=http://host:11000 (environments started with ng_run)")
        self.urls = normalize_urls(url, "resource.params.url")
        self.env_name = name or self.urls[0].split("://", 1)[-1]
        if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1:
            raise ConfigError(f"environment {self.env_name}: max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
            raise ConfigError(f"environment {self.env_name}: timeout_s must be a number > 0, got {timeout_s!r}")
        self.max_in_flight = max_in_flight
        self.timeout_s = float(timeout_s)
        self._tools: frozenset[str] | None = None
        self._required: frozenset[str] = frozenset()  # row fields its seed/verify schemas require
        self._dispatcher: Dispatcher | None = None
        self._transport: HttpTransport | None = None
        self._slots: asyncio.Semaphore | None = None
        self._keys = itertools.count()
        self.live_sessions = 0
        self.calls: dict[str, int] = {}
        self.failed_calls: dict[str, int] = {}
        self.tool_client_errors = 0

    # -- set-up ----------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"environment '{self.env_name}' ({', '.join(self.urls)})"

    def served_tools(self) -> frozenset[str] | None:
        return self._tools

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        missing = sorted(f for f in self._required if f not in row)
        if missing:
            return (f"lacks field(s) {', '.join(missing)} that {self.describe()} requires (its /seed_session and "
                    f"/verify request schemas); is this row meant for another environment?")
        return None

    async def start(self, ctx: ResourceContext) -> None:
        self._transport = ctx.transport
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._tools = await self._check_servers(ctx.transport)
        self._dispatcher = Dispatcher(self.urls, ctx.transport, ctx.router, ctx.transport_cfg, health_path="/")
        await self._dispatcher.__aenter__()

    async def stop(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            await dispatcher.__aexit__(None, None, None)

    async def _check_servers(self, transport: HttpTransport) -> frozenset[str] | None:
        """Every replica answers ``GET /``; the tools (and required row fields) of the first one
        that publishes OpenAPI."""
        tools: frozenset[str] | None = None
        for url in self.urls:
            await check_reachable(transport, url, f"environment '{self.env_name}'")
            doc = await fetch_openapi(transport, url)
            found = tools_from_openapi(doc)
            if tools is None and found is not None:
                tools, self._required = found, required_row_fields(doc)
            elif found is not None and found != tools:
                log.warning("replicas of environment %s serve different tools (%s vs %s); checking rows "
                            "against the first", self.env_name, sorted(tools), sorted(found))
        return tools

    # -- one rollout -----------------------------------------------------------------------------
    async def seed(self, row: Mapping[str, Any]) -> EnvSession:
        session = EnvSession(key=f"e{next(self._keys)}")
        self.live_sessions += 1
        try:
            await self._call(session, "seed_session", "/seed_session", for_environment(row))
        except BaseException:
            await self.close(session)
            raise
        return session

    async def call_tool(self, state: Any, name: str, arguments: Mapping[str, Any]) -> str:
        if not _TOOL_NAME.fullmatch(name) or name in PROTOCOL_ROUTES:
            return orjson.dumps({"error": f"unknown tool {name!r}"}).decode()
        answer, _ = await self._call(state, name, f"/{name}", arguments, tool=True)
        return answer.body.decode("utf-8", "replace")

    def bad_arguments(self, name: str, problem: str) -> str:
        return orjson.dumps({"error": f"Invalid tool call arguments for {name}: {problem}"}).decode()

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        body = {**for_environment(row), "response": response}
        answer, result = await self._call(state, "verify", "/verify", body)
        reward = result.get("reward") if isinstance(result, dict) else None
        if reward is None or isinstance(reward, bool) or not isinstance(reward, (int, float)):
            raise EnvironmentCallError(
                f"{self.describe()}: verify answered without a numeric 'reward' ({answer.body[:200]!r})",
                environment=self.env_name, call="verify")
        extras = {k: v for k, v in result.items() if k not in body and k != "reward"}
        return Verification(float(reward), extras)

    async def aggregate_metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The environment's own ``/aggregate_metrics`` over finished rows (NeMo Gym calls it after a
        run: benchmark-specific metrics and headline ``key_metrics`` come from there)."""
        session = EnvSession(key=f"m{next(self._keys)}")
        try:
            _, result = await self._call(session, "aggregate_metrics", "/aggregate_metrics", {"verify_responses": rows})
        finally:
            if self._dispatcher is not None:
                self._dispatcher.forget(session.key)
        if not isinstance(result, dict):
            raise EnvironmentCallError(f"{self.describe()}: aggregate_metrics answered a {type(result).__name__}",
                                       environment=self.env_name, call="aggregate_metrics")
        return result

    async def close(self, state: Any) -> None:
        if isinstance(state, EnvSession) and not state.closed:
            state.closed = True
            state.cookies.clear()
            self.live_sessions -= 1
            if self._dispatcher is not None:
                self._dispatcher.forget(state.key)

    # -- the wire --------------------------------------------------------------------------------
    async def _call(self, session: EnvSession, call: str, path: str, body: Mapping[str, Any],
                    *, tool: bool = False) -> tuple[Answer, Any]:
        """(the answer, its decoded JSON body); a tool's 4xx answer comes back as (answer, None)."""
        if self._dispatcher is None or self._transport is None or self._slots is None:
            raise RuntimeError(f"{self.describe()} used before start()")
        transport, slots = self._transport, self._slots
        data = orjson.dumps(body)
        self.calls[call] = self.calls.get(call, 0) + 1

        async def send(url: str, server: str) -> tuple[Answer, Any]:
            async with slots:
                answer = await transport.post(url, data, server=server, timeout_s=self.timeout_s,
                                              headers=session.header())
            if answer.status >= 300:
                text = answer.body.decode("utf-8", "replace")
                raise ServerStatusError(answer.status, text, server=server, message=error_message(text))
            try:
                return answer, orjson.loads(answer.body)
            except orjson.JSONDecodeError as exc:
                raise MalformedReplyError(f"{server}{path} answered {answer.status} with a body that is not "
                                          f"JSON ({exc}): {answer.body[:120]!r}", server=server) from None

        try:
            _, (answer, decoded) = await self._dispatcher.post(path, body, session.key, send=send)
        except ServerStatusError as exc:
            if tool and 400 <= exc.status < 500 and exc.status != 429:
                self.tool_client_errors += 1
                return Answer(exc.status, exc.body.encode(), {}), None  # the model's mistake: it sees the answer
            raise self._failed(call, exc) from None
        except GymRolloutsError as exc:
            raise self._failed(call, exc) from None
        session.cookies.update(answer.cookies)
        return answer, decoded

    def _failed(self, call: str, exc: GymRolloutsError) -> EnvironmentCallError:
        self.failed_calls[call] = self.failed_calls.get(call, 0) + 1
        server = getattr(exc, "server", None)
        what = "tool " + call if call not in PROTOCOL_ROUTES else call
        return EnvironmentCallError(f"{self.describe()}: {what} failed: {exc}", environment=self.env_name,
                                    call=call, server=server, cause=exc)

    def stats(self) -> dict[str, Any]:
        return {"environment": self.env_name, "urls": list(self.urls), "calls": dict(self.calls),
                "failed_calls": dict(self.failed_calls), "tool_client_errors": self.tool_client_errors,
                "live_sessions": self.live_sessions,
                "live_rollouts": self._dispatcher.policy.live_rollouts if self._dispatcher is not None else 0,
                "servers": self._dispatcher.stats() if self._dispatcher is not None else []}


async def check_reachable(transport: HttpTransport, url: str, what: str) -> None:
    """``GET <url>/`` must answer 200 (NeMo Gym servers answer ``{"status": "ok"}``)."""
    try:
        status, raw = await transport.get(url + "/", timeout_s=CHECK_TIMEOUT_S, control=True)
    except TransportError as exc:
        raise StartupError(f"{what} at {url} is not reachable ({exc.kind}): {exc}. Is it running? Start it "
                           f"with NeMo Gym's ng_run (see README: Bring your NeMo Gym environments), or fix "
                           f"the URL; check with: curl {url}/") from None
    if status != 200:
        raise StartupError(f"{what} at {url} answered GET / with HTTP {status} "
                           f"({raw[:200].decode('utf-8', 'replace')}); is this a NeMo Gym server?")


async def fetch_openapi(transport: HttpTransport, url: str) -> Any:
    """``url``'s ``/openapi.json`` document; None when it publishes none."""
    try:
        status, raw = await transport.get(url + "/openapi.json", timeout_s=CHECK_TIMEOUT_S, control=True)
    except TransportError:
        return None
    if status != 200:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
