"""Whether a failed attempt is worth another: the rule for failures that would repeat exactly.

An attempt is retried (up to ``max_attempts``) because most failures are chance: a server that
went away, a timeout, a sampled tool call that crashed the tool. Some are not: the first model
call of a rollout is built from the row and the config alone, so when *that* call fails because
the request itself is refused, every attempt fails the same way. Such a failure is terminal: it
is recorded once (``_ng_failure_terminal: true``, like a skipped bad input row) and the rollout
is failed for good at once, also across resumes.

Terminal, when no model call of the attempt had been answered yet:
- ``RequestConversionError``: the adapter could not turn the row into a request;
- ``ServerStatusError`` with a status that judges the request itself (400 bad request, 413 too
  large, 422 unprocessable), context-length answers excepted (they end the rollout ``incomplete``
  before reaching here) and refusals of tools excepted (they stop the run, engine/runner.py).
Anything later in the rollout depends on sampled output, so it is retried as before.
"""

from __future__ import annotations

from gym_rollouts.adapter.messages import RequestConversionError
from gym_rollouts.errors import ServerStatusError, ToolSupportError

TERMINAL = "_ng_failure_terminal"
REQUEST_REFUSED_STATUSES = frozenset({400, 413, 422})


def fails_the_same_way_again(exc: BaseException, answered_model_calls: int) -> bool:
    """True when another attempt of the rollout would fail exactly like this one (module doc)."""
    if answered_model_calls:
        return False
    if isinstance(exc, RequestConversionError):
        return True
    return (isinstance(exc, ServerStatusError) and not isinstance(exc, ToolSupportError)
            and exc.status in REQUEST_REFUSED_STATUSES)
