"""The embedded server's simulated GPU: prefix cache, KV-cache ledger and step scheduler (pure).

No I/O and no clock: `sim_loop.SimLoop` drives `KVScheduler` in time; unit tests drive it with a
virtual clock. What it models (opt-in flags `--kv-cache-tokens`, `--prefill-ms-per-token`,
`--prefix-cache-blocks`):

- `PrefixCache`: prompts hashed in 16-token blocks, each hash chained on the previous one (as
  vLLM's block hashes are); the leading run of known blocks are hits. Bounded: least recently
  used blocks are evicted beyond the capacity.
- `KVScheduler`: continuous batching in discrete engine steps, like vLLM's V1 scheduler. A step
  costs `decode_s + prefill_s_per_token * (prompt tokens prefilled in it)`; each running request
  gains one token per step (`width` tokens for a request of `n` parallel sequences). A running
  request holds prompt + generated tokens of KV (the held count grows as it generates). Before
  each step the running requests must have room for their next tokens: while they do not, the
  most recently started one is PREEMPTED (back to the front of the waiting queue, counted); when
  admitted again it recomputes prompt + generated tokens (no prefix-cache credit: its blocks were
  freed). Waiting requests are admitted first come, first served while their prompt (+ the token
  of the step) fits and `max_num_seqs` allows; the queue head blocks the rest, as in vLLM.
  Nothing is refused for lack of room, except a request that could not fit even alone (`submit`
  raises `KVTooSmall`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Sequence

BLOCK_SIZE = 16
DEFAULT_PREFIX_CACHE_BLOCKS = 200_000


class PrefixCache:
    """LRU set of chained block hashes; `lookup` returns the prompt's hit tokens and inserts the rest."""

    def __init__(self, capacity_blocks: int = 0) -> None:
        self.capacity = capacity_blocks if capacity_blocks > 0 else DEFAULT_PREFIX_CACHE_BLOCKS
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, ids: Sequence[int]) -> int:
        blocks, touch = self._blocks, self._blocks.move_to_end
        h, hits, hitting = 0, 0, True
        for start in range(0, len(ids) - BLOCK_SIZE + 1, BLOCK_SIZE):
            h = hash((h, tuple(ids[start:start + BLOCK_SIZE])))
            if hitting:
                if h in blocks:
                    hits += BLOCK_SIZE
                    touch(h)
                    continue
                hitting = False
            blocks[h] = None
        excess = len(blocks) - self.capacity
        for _ in range(excess):
            blocks.popitem(last=False)
        return hits


class KVTooSmall(ValueError):
    """A request whose prompt + output cannot fit in the whole KV cache."""


@dataclass
class SimRequest:
    rid: int
    prompt_ids: Sequence[int]
    output_tokens: int
    width: int = 1  # sequences decoded in parallel (the request's n): tokens per step
    generated: int = 0
    prefill_left: int = 0  # prompt tokens to compute in the next step (set on admission)
    admitted_before: bool = False

    @property
    def held(self) -> int:
        return len(self.prompt_ids) + self.generated


class KVScheduler:
    """See module doc. `capacity_tokens` 0 = unlimited KV; `max_num_seqs` 0 = no limit."""

    def __init__(self, capacity_tokens: int = 0, max_num_seqs: int = 0, decode_s: float = 0.0,
                 prefill_s_per_token: float = 0.0,
                 lookup: Callable[[Sequence[int]], int] | None = None) -> None:
        if capacity_tokens < 0 or max_num_seqs < 0 or decode_s < 0 or prefill_s_per_token < 0:
            raise ValueError("capacity_tokens, max_num_seqs, decode_s and prefill_s_per_token must be >= 0")
        self.capacity = capacity_tokens
        self.max_num_seqs = max_num_seqs
        self.decode_s = decode_s
        self.prefill_s_per_token = prefill_s_per_token
        self.lookup = lookup
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.held_tokens = 0
        self.preemptions = 0
        self.prefilled_tokens = 0  # computed prompt tokens, recomputation included
        self.recomputed_tokens = 0  # of which recomputation after a preemption
        self._requests: dict[int, SimRequest] = {}

    # -- queries --------------------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def usage(self) -> float:
        """KV-cache usage in [0, 1] (0 when the capacity is unlimited)."""
        return min(1.0, self.held_tokens / self.capacity) if self.capacity else 0.0

    def tokens_in_flight(self) -> int:
        """Tokens generated so far by requests not finished yet."""
        return sum(r.generated for r in self._requests.values())

    # -- requests -------------------------------------------------------------------------------
    def submit(self, rid: int, prompt_ids: Sequence[int], output_tokens: int, width: int = 1) -> None:
        if rid in self._requests:
            raise ValueError(f"request {rid} already submitted")
        if output_tokens < 1:
            raise ValueError(f"output_tokens must be >= 1, got {output_tokens}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        need = len(prompt_ids) + output_tokens
        if self.capacity and need > self.capacity:
            raise KVTooSmall(
                f"this request needs {need} tokens of KV cache ({len(prompt_ids)} prompt + "
                f"{output_tokens} output) but the simulated cache holds {self.capacity} "
                "(--kv-cache-tokens); raise it or ask for fewer tokens")
        req = SimRequest(rid, prompt_ids, output_tokens, width)
        self._requests[rid] = req
        self.waiting.append(req)

    def cancel(self, rid: int) -> int:
        """Drop a request (its client left); returns the tokens it had generated."""
        req = self._requests.pop(rid, None)
        if req is None:
            return 0
        if req in self.running:
            self.running.remove(req)
            self.held_tokens -= req.held
        else:
            self.waiting.remove(req)
        return req.generated

    # -- steps ----------------------------------------------------------------------------------
    def plan_step(self) -> float | None:
        """Preempt for room, admit, and return this step's duration (None: nothing to run)."""
        self._preempt_for_growth()
        self._admit()
        if not self.running:
            return None
        prefill = sum(r.prefill_left for r in self.running)
        return self.decode_s + self.prefill_s_per_token * prefill

    def finish_step(self) -> list[int]:
        """The step ran: each running request computed its prefill and one token. Returns the
        ids of the requests that finished (they leave the scheduler)."""
        done: list[int] = []
        still: list[SimRequest] = []
        for req in self.running:
            req.prefill_left = 0
            step = min(req.width, req.output_tokens - req.generated)
            req.generated += step
            self.held_tokens += step
            if req.generated >= req.output_tokens:
                self.held_tokens -= req.held
                del self._requests[req.rid]
                done.append(req.rid)
            else:
                still.append(req)
        self.running = still
        return done

    def _preempt_for_growth(self) -> None:
        if not self.capacity:
            return
        while len(self.running) > 1 and self.held_tokens + self._growth() > self.capacity:
            victim = self.running.pop()  # the most recently started
            self.held_tokens -= victim.held
            self.waiting.appendleft(victim)
            self.preemptions += 1

    def _growth(self) -> int:
        """KV tokens the running requests add in the next step."""
        return sum(min(r.width, r.output_tokens - r.generated) for r in self.running)

    def _admit(self) -> None:
        while self.waiting:
            if self.max_num_seqs and len(self.running) >= self.max_num_seqs:
                return
            head = self.waiting[0]
            if self.capacity and self.running and \
                    self.held_tokens + self._growth() + head.held + head.width > self.capacity:
                return
            self.waiting.popleft()
            if head.admitted_before:  # recompute: prompt + generated, no cache credit
                head.prefill_left = head.held
                self.recomputed_tokens += head.held
            else:
                hits = self.lookup(head.prompt_ids) if self.lookup is not None else 0
                head.prefill_left = max(1, len(head.prompt_ids) - hits) if head.prompt_ids else 0
                head.admitted_before = True
            self.prefilled_tokens += head.prefill_left
            self.held_tokens += head.held
            self.running.append(head)


def simulate(sched: KVScheduler, requests: Sequence[tuple],
             arrivals: Sequence[float] | None = None) -> dict[int, float]:
    """Run `requests` ((prompt_ids, output_tokens[, width]), submitted at `arrivals`, default all at 0)
    on a virtual clock; returns each request index's finish time. For tests and sizing."""
    arrivals = list(arrivals) if arrivals is not None else [0.0] * len(requests)
    order = sorted(range(len(requests)), key=lambda i: arrivals[i])
    now, finished, nxt = 0.0, {}, 0
    while len(finished) < len(requests):
        while nxt < len(order) and arrivals[order[nxt]] <= now:
            i = order[nxt]
            sched.submit(i, *requests[i])
            nxt += 1
        seconds = sched.plan_step()
        if seconds is None:
            now = arrivals[order[nxt]]
            continue
        now += seconds
        for rid in sched.finish_step():
            finished[rid] = now
    return finished
