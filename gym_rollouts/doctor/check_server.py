"""Checks 1-3, per server: reachability and ``/health``, the base URL form, the model id (pure).

Each function takes one ``ServerFacts`` (plus the configured model id) and returns a ``Finding``
with the evidence seen on the wire and the exact fix: the flag, the config key and value, or the
URL to use.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gym_rollouts.adapter.startup import closest_model
from gym_rollouts.doctor.facts import Exchange, ServerFacts
from gym_rollouts.doctor.findings import Finding, Status
from gym_rollouts.router.dispatcher import root_url

def _host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "?", str(port)


def _connect_failure(server: str, health: Exchange) -> Finding:
    host, port = _host_port(server)
    curl = f"curl {root_url(server.rstrip('/'))}/health"
    reason = health.reason
    if reason == "refused":
        return Finding("reachability", Status.FAIL, f"connection refused by {host}:{port}",
                       f"GET /health: {health.error}. Nothing listens on port {port} of {host}: the "
                       f"server is not started, crashed, or listens on another port.",
                       f"start vLLM there (`--host {host} --port {port}`) or correct the port in "
                       f"policy_base_url, or drop this server from the list; check with: {curl}", server)
    if reason == "dns":
        return Finding("reachability", Status.FAIL, f"the host name {host!r} does not resolve",
                       f"GET /health: {health.error} (DNS lookup failed; no connection was tried).",
                       f"fix the host name in policy_base_url (a typo?) or use the server's IP address, "
                       f"e.g. http://<ip>:{port}/v1", server)
    if health.kind == "timeout":
        return Finding("reachability", Status.FAIL, f"no answer from {host}:{port} in time",
                       f"GET /health: {health.error} after {health.elapsed_ms:.0f} ms. The server "
                       f"accepts connections but does not answer (overloaded, stuck, still loading), or "
                       f"a firewall silently drops the traffic.",
                       f"look at the server's log and process; check firewall rules for port {port}; "
                       f"if it is only slow, raise doctor.timeout_s; check with: {curl}", server)
    if health.kind == "disconnected":
        return Finding("reachability", Status.FAIL, f"{host}:{port} closed the connection without an answer",
                       f"GET /health: {health.error}",
                       "check the scheme (http:// vs https://) and the port in policy_base_url: is "
                       f"this a vLLM server? check with: {curl}", server)
    return Finding("reachability", Status.FAIL, f"cannot connect to {host}:{port}",
                   f"GET /health: {health.error}",
                   f"check the network path and firewall between this machine and {host}:{port}; "
                   f"check with: {curl}", server)


def server_kind(facts: ServerFacts) -> str:
    """What answered ``/version``: vLLM and its version, or our embedded demo backend (which
    imitates vLLM's ``/version`` and adds a marker field, embedded/server.py)."""
    if facts.embedded_version is not None:
        return f"embedded demo backend (gym_rollouts {facts.embedded_version}), not vLLM"
    return f"vLLM {facts.version}"


def check_reachability(facts: ServerFacts) -> Finding:
    server, health = facts.configured, facts.health
    if health is None:
        return Finding("reachability", Status.SKIP, "not probed", server=server)
    if health.status is None:
        return _connect_failure(server, health)
    where = f"GET {health.url} -> HTTP {health.status} in {health.elapsed_ms:.0f} ms"
    version = f" ({server_kind(facts)})" if facts.version else ""
    if facts.embedded_version is not None:
        version = f": {server_kind(facts)}"
    if health.status == 200:
        return Finding("reachability", Status.PASS, f"the server is up{version}", where, server=server)
    if health.status == 404:
        return Finding("reachability", Status.WARN, "the server has no /health at its root",
                       f"{where}. A proxy or a non-vLLM server? The router uses /health to bring a "
                       f"server back after a failure, so this one would stay out once marked down.",
                       "point policy_base_url straight at the vLLM server (http://host:port/v1)", server)
    return Finding("reachability", Status.FAIL, f"the server reports itself unhealthy (HTTP {health.status})",
                   f"{where}: {health.message[:300]}",
                   "look at the vLLM server's log (the engine may have died: restart it)", server)


def check_base_url(facts: ServerFacts) -> Finding:
    server = facts.configured
    if not facts.reachable:
        return Finding("base_url", Status.SKIP, "server not reachable (see reachability)", server=server)
    if facts.base_url is None:
        fix = "use the vLLM OpenAI server's URL ending in /v1, e.g. http://host:8000/v1"
        if facts.models_status in (401, 403):
            fix = "set policy_api_key to the key the server was started with (--api-key)"
        return Finding("base_url", Status.FAIL, "/v1/models cannot be used", facts.models_error or "", fix, server)
    ids = ", ".join(facts.served_ids) or "(none)"
    if facts.base_url != facts.configured.rstrip("/"):
        return Finding("base_url", Status.FAIL, "the base URL lacks /v1",
                       f"GET {facts.configured.rstrip('/')}/models -> 404; GET {facts.base_url}/models -> "
                       f"200 serving {ids}. collect works around it with a warning; other OpenAI clients "
                       f"and tools will not.",
                       f"use {facts.base_url} in policy_base_url (policy_base_url={facts.base_url})", server)
    return Finding("base_url", Status.PASS, "the base URL ends in /v1 and /models answers",
                   f"GET {facts.base_url}/models -> 200 serving {ids}", server=server)


def check_model(facts: ServerFacts, wanted: str | None) -> Finding:
    server = facts.configured
    if facts.base_url is None:
        return Finding("model", Status.SKIP, "no /v1/models answer (see base_url)", server=server)
    ids = facts.served_ids
    listed = ", ".join(ids) or "(none)"
    if not ids:
        return Finding("model", Status.FAIL, "the server serves no model", "/v1/models listed no ids",
                       "check the vLLM server's log: the model did not load", server)
    if wanted is None:
        if len(ids) == 1:
            return Finding("model", Status.PASS, f"serves {ids[0]!r} (policy_model_name is null: the only "
                           f"served model is used)", f"/v1/models: {listed}", server=server)
        return Finding("model", Status.FAIL, "several models served and policy_model_name is null",
                       f"/v1/models: {listed}", f"set policy_model_name to one of: {listed}", server)
    if wanted in ids:
        return Finding("model", Status.PASS, f"serves {wanted!r}", f"/v1/models: {listed}", server=server)
    close = closest_model(wanted, ids)
    hint = f"; the closest served id is {close!r}" if close else ""
    fix = (f"policy_model_name={close}" if close else f"set policy_model_name to one of: {listed}")
    return Finding("model", Status.FAIL, f"the configured model {wanted!r} is not served",
                   f"/v1/models lists: {listed}{hint}. vLLM answers 404 \"The model `{wanted}` does not "
                   f"exist\" to every request.",
                   f"{fix} (exactly as /v1/models shows it), or restart vLLM with "
                   f"--served-model-name {wanted}", server)
