"""Live counters of a run (read by the progress display and the final summary).

Plain integer attributes updated by the engine as rollouts finish: reading them costs nothing,
so the progress display can poll as often as it likes. Counters named ``prior_*`` describe
earlier runs on the same output (resume); the others describe this run only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunStats:
    total: int | None = None  # jobs of the whole run (all runs together)
    done: int = 0  # rollouts written by this run
    failed: int = 0  # rollouts that used up max_attempts in this run
    failed_attempts: int = 0  # failed attempts recorded by this run
    attempt_retries: int = 0  # attempts started after a failed one
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    context_length_stops: int = 0
    max_output_tokens_stops: int = 0
    max_steps_stops: int = 0
    skipped_inputs: int = 0  # bad input rows recorded (on_bad_input=skip)
    prior_done: int = 0  # rows already in the output from earlier runs
    prior_failed: int = 0  # rollouts that used up max_attempts in earlier runs
    request_retries: int = 0  # model calls retried by the router (refreshed from its stats)
    servers: list[dict[str, Any]] = field(default_factory=list)  # router's per-server stats (refreshed)
    started: float = field(default_factory=time.perf_counter)

    def start_clock(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    @property
    def finished(self) -> int:
        """Jobs accounted for: written or failed for good, in any run."""
        return self.prior_done + self.done + self.prior_failed + self.failed

    @property
    def failures(self) -> int:
        return self.prior_failed + self.failed

    def record(self, usage: dict, stop_reason: str) -> None:
        self.done += 1
        self.input_tokens += usage.get("input_tokens", 0)
        self.output_tokens += usage.get("output_tokens", 0)
        if stop_reason == "context_length":
            self.context_length_stops += 1
        elif stop_reason == "max_output_tokens":
            self.max_output_tokens_stops += 1
        elif stop_reason == "max_steps":
            self.max_steps_stops += 1

    def summary(self) -> dict[str, Any]:
        elapsed = self.elapsed()
        return {
            "total": self.total,
            "rollouts": self.prior_done + self.done,
            "rollouts_this_run": self.done,
            "resumed_rows": self.prior_done,
            "failures": self.failures,
            "failed_attempts_this_run": self.failed_attempts,
            "attempt_retries": self.attempt_retries,
            "request_retries": self.request_retries,
            "rollouts_per_s": round(self.done / elapsed, 2),
            "output_tokens_per_s": round(self.output_tokens / elapsed, 1),
            "input_tokens_this_run": self.input_tokens,
            "output_tokens_this_run": self.output_tokens,
            "context_length_stops": self.context_length_stops,
            "max_output_tokens_stops": self.max_output_tokens_stops,
            "max_steps_stops": self.max_steps_stops,
            "skipped_inputs": self.skipped_inputs,
            "elapsed_s": round(elapsed, 3),
        }
