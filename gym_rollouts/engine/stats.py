"""Live counters of a run (read by the progress display and the final summary)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RunStats:
    total: int | None = None
    done: int = 0
    failed: int = 0
    failed_attempts: int = 0
    in_flight: int = 0
    reward_sum: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    context_length_stops: int = 0
    max_output_tokens_stops: int = 0
    max_steps_stops: int = 0
    skipped_inputs: int = 0
    resumed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def record(self, reward: float, usage: dict, stop_reason: str) -> None:
        self.done += 1
        self.reward_sum += reward
        self.input_tokens += usage.get("input_tokens", 0)
        self.output_tokens += usage.get("output_tokens", 0)
        if stop_reason == "context_length":
            self.context_length_stops += 1
        elif stop_reason == "max_output_tokens":
            self.max_output_tokens_stops += 1
        elif stop_reason == "max_steps":
            self.max_steps_stops += 1

    def summary(self) -> dict:
        elapsed = self.elapsed()
        return {
            "rollouts": self.done,
            "failures": self.failed,
            "failed_attempts": self.failed_attempts,
            "mean_reward": round(self.reward_sum / self.done, 6) if self.done else None,
            "rollouts_per_s": round(self.done / elapsed, 2),
            "output_tokens_per_s": round(self.output_tokens / elapsed, 1),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "context_length_stops": self.context_length_stops,
            "max_output_tokens_stops": self.max_output_tokens_stops,
            "max_steps_stops": self.max_steps_stops,
            "skipped_inputs": self.skipped_inputs,
            "resumed_rows": self.resumed,
            "elapsed_s": round(elapsed, 3),
        }
