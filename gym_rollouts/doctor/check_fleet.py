"""Checks 4, 8 and 9: context length, throughput hints, fleet consistency (pure).

Context length is judged against the smallest ``max_model_len`` of the fleet (what collect uses
to clamp), with the prompt sizes of the dataset's first rows when they could be measured.
Throughput hints come from each server's ``/metrics`` plus ``num_samples_in_parallel``.
"""

from __future__ import annotations

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.doctor.facts import FleetFacts, SampleRow, ServerFacts
from gym_rollouts.doctor.findings import Finding, Status, worst
from gym_rollouts.router.vllm_metrics import parse_metrics

MIN_PER_SERVER = 8  # concurrent rollouts per server below which vLLM's batching is mostly idle
SUGGESTED_PER_SERVER = 64
KV_CACHE_HIGH = 0.9


def fleet_max_model_len(fleet: FleetFacts, model: str | None) -> int | None:
    lengths = [s.max_model_len(model if model in s.served_ids else s.probe_model)
               for s in fleet.servers if s.base_url]
    known = [n for n in lengths if n is not None]
    return min(known) if known else None


def _row_verdict(row: SampleRow, mml: int, clamp: bool) -> tuple[Status, str, str | None]:
    p, o = row.prompt_tokens, row.max_output_tokens
    where = f"line {row.line_no}: prompt {p} tokens, max_output_tokens {o}"
    if p is not None and p >= mml:
        return (Status.FAIL, f"{where}: the prompt alone fills max_model_len {mml}; the rollout stops at once "
                f"(context_length)", f"restart vLLM with --max-model-len >= {p + (o or 256)} (if the model "
                f"supports it) or shorten the prompts")
    if o is not None and o > mml:
        if clamp:
            return (Status.WARN, f"{where}: max_output_tokens exceeds max_model_len {mml}; every call is "
                    f"clamped to what fits", f"responses_create_params.max_output_tokens={mml - (p or 0)}")
        return (Status.FAIL, f"{where}: vLLM refuses max_tokens={o} > max_model_len={mml} with HTTP 400 "
                f"(clamp_max_tokens_to_context is off)", f"responses_create_params.max_output_tokens="
                f"{mml - (p or 0)} or model.clamp_max_tokens_to_context=true")
    if p is not None and o is not None and p + o > mml:
        return (Status.WARN, f"{where}: {p} + {o} > max_model_len {mml}; the first answer is cut at "
                f"{mml - p} tokens (later turns have even less room)",
                f"responses_create_params.max_output_tokens={mml - p} or restart vLLM with "
                f"--max-model-len {p + o}")
    if p is None:
        return Status.PASS, f"{where}" + (f" ({row.error})" if row.error else ""), None
    return Status.PASS, f"{where}: fits ({mml - p - (o or 0)} tokens spare for tool turns)", None


def check_context(cfg: CollectConfig, fleet: FleetFacts) -> Finding:
    model = fleet.model(cfg.model.model)
    mml = fleet_max_model_len(fleet, model)
    if fleet.input_error:
        return Finding("context", Status.FAIL, "the input rows cannot be read", fleet.input_error,
                       "set input_jsonl_fpath to an existing task JSONL file")
    if mml is None:
        usable = any(s.base_url for s in fleet.servers)
        return Finding("context", Status.SKIP if not usable else Status.WARN,
                       "max_model_len unknown" if usable else "no usable server",
                       "/v1/models did not report max_model_len" if usable else "see the checks above",
                       "compare max_output_tokens with the server's --max-model-len by hand" if usable else None)
    rows = fleet.rows or [SampleRow(0, None, cfg.responses_create_params.get("max_output_tokens"))]
    verdicts = [_row_verdict(r, mml, cfg.model.clamp_max_tokens_to_context) for r in rows]
    status = worst([v[0] for v in verdicts])
    source = f" of {fleet.input_path}" if fleet.input_path else ""
    evidence = f"max_model_len {mml} (smallest in the fleet); first rows{source}:\n" + "\n".join(
        v[1] for v in verdicts)
    fix = next((v[2] for v in verdicts if v[0] is status and v[2]), None)
    summary = {Status.PASS: "prompts and max_output_tokens fit max_model_len",
               Status.WARN: "generations will be cut by the context length",
               Status.FAIL: "requests will not fit the context length"}.get(status, "context length")
    return Finding("context", status, summary, evidence, fix)


def check_throughput(facts: ServerFacts) -> Finding:
    server = facts.configured
    ex = facts.metrics
    if ex is None or not ex.ok or not isinstance(ex.body, str):
        why = "not probed" if ex is None else f"GET /metrics -> {ex.status or ex.message}"
        return Finding("throughput", Status.SKIP, "no /metrics to read", why, server=server)
    m = parse_metrics(ex.body)
    prefix = m.prefix_caching
    entry = facts.model_entry(facts.probe_model)
    if prefix is None and isinstance(entry.get("prefix_caching"), bool):
        prefix = entry["prefix_caching"]
    if prefix is None and m.prefix_cache_queries is not None and facts.basic is not None and facts.basic.ok:
        prefix = m.prefix_cache_queries > 0  # after our probe, an enabled cache has been queried
    waiting, kv = m.waiting, m.kv_cache_usage
    parts = [f"prefix caching {'on' if prefix else 'off' if prefix is False else 'unknown'}",
             f"running {m.running:g}" if m.running is not None else "running ?",
             f"waiting {waiting:g}" if waiting is not None else "waiting ?",
             f"KV cache {kv:.0%}" if kv is not None else "KV cache ?"]
    if m.prefix_cache_queries:
        parts.append(f"prefix hit rate {(m.prefix_cache_hits or 0) / m.prefix_cache_queries:.0%}")
    evidence = "/metrics: " + ", ".join(parts)
    problems: list[tuple[str, str]] = []
    if prefix is False:
        problems.append(("prefix caching is off (rollouts of a task share long prompt prefixes)",
                         "restart vLLM with --enable-prefix-caching"))
    if waiting:
        problems.append((f"{waiting:g} requests are waiting: the server is saturated",
                         "add servers to policy_base_url, or lower num_samples_in_parallel; on the server, "
                         "more --max-num-seqs or --gpu-memory-utilization if memory allows"))
    if kv is not None and kv >= KV_CACHE_HIGH:
        problems.append((f"the KV cache is {kv:.0%} full (requests get preempted)",
                         "add servers, lower num_samples_in_parallel, or give vLLM more KV cache "
                         "(--gpu-memory-utilization, tensor parallelism)"))
    if not problems:
        return Finding("throughput", Status.PASS, "no throughput problem seen on this server", evidence, server=server)
    return Finding("throughput", Status.WARN, "; ".join(p[0] for p in problems), evidence,
                   "; ".join(p[1] for p in problems), server)


def check_concurrency(cfg: CollectConfig, fleet: FleetFacts) -> Finding:
    n = max(1, len(fleet.servers))
    k = cfg.num_samples_in_parallel
    if not isinstance(k, int):  # auto (by each server's KV room: docs/router.md, Admission) or null (no limit)
        return Finding("throughput", Status.PASS, "concurrency set per server by admission" if k == "auto"
                       else "no concurrency limit", f"num_samples_in_parallel={k} over {n} server(s)")
    k = cfg.num_samples_in_parallel
    evidence = f"num_samples_in_parallel={k} over {n} server(s): about {k / n:.1f} concurrent rollouts each"
    if k < n:
        return Finding("throughput", Status.WARN, f"{n - k} server(s) will sit idle", evidence,
                       f"num_samples_in_parallel={n * SUGGESTED_PER_SERVER}")
    if k / n < MIN_PER_SERVER:
        return Finding("throughput", Status.WARN, "too little concurrency to keep vLLM's batches full",
                       evidence + f" (vLLM batches up to --max-num-seqs requests; below {MIN_PER_SERVER} "
                       f"per server it mostly waits)", f"num_samples_in_parallel={n * SUGGESTED_PER_SERVER}")
    return Finding("throughput", Status.PASS, "enough concurrency for the fleet", evidence)


def check_fleet(cfg: CollectConfig, fleet: FleetFacts) -> Finding:
    servers = fleet.servers
    usable = [s for s in servers if s.base_url]
    broken = [s.configured for s in servers if not s.base_url]
    if len(servers) == 1:
        return Finding("fleet", Status.PASS if usable else Status.SKIP, "a single server: nothing to compare",
                       "policy_base_url lists one server" if not fleet.embedded else "one embedded server")
    lines = [f"{s.configured}: serves {', '.join(s.served_ids) or '(none)'}; max_model_len "
             f"{s.max_model_len(fleet.model(cfg.model.model) or s.probe_model)}" for s in usable]
    lines += [f"{url}: not usable (see the checks above)" for url in broken]
    evidence = "\n".join(lines)
    model = fleet.model(cfg.model.model)
    if model is None:
        models = sorted({i for s in usable for i in s.served_ids})
        return Finding("fleet", Status.FAIL, "the servers do not serve one common model", evidence,
                       f"set policy_model_name to the model every server serves, or restart the others "
                       f"with --served-model-name <name> (served now: {', '.join(models)})")
    missing = [s.configured for s in usable if model not in s.served_ids]
    if missing:
        return Finding("fleet", Status.FAIL, f"not every server serves {model!r}", evidence,
                       f"restart {', '.join(missing)} with --served-model-name {model}, or remove "
                       f"them from policy_base_url")
    lengths = {s.configured: s.max_model_len(model) for s in usable}
    if len(set(lengths.values())) > 1:
        known = sorted({v for v in lengths.values() if v is not None})
        now = ", ".join(f"{u}: {v}" for u, v in lengths.items())
        return Finding("fleet", Status.FAIL, "the servers disagree on max_model_len", evidence,
                       f"restart the servers with one --max-model-len value (now {now}); until then "
                       f"collect clamps every request to the smallest, {known[0] if known else '?'}")
    if broken:
        return Finding("fleet", Status.FAIL, f"{len(broken)} of {len(servers)} servers cannot be used", evidence,
                       f"start them or remove them from policy_base_url: {', '.join(broken)}")
    return Finding("fleet", Status.PASS, f"all {len(servers)} servers serve {model!r} with the same "
                   f"max_model_len", evidence)
