"""The one exception tree of gym_rollouts.

Retryability is a property of the class (``retryable``), never a regex on a message.
``ConfigError`` is printed by the CLI without a traceback and exits with code 2.
``RunStopped`` (and its kinds) stops a run part-way: the CLI prints its message and the resume
command and exits with the error's ``exit_code`` (the table is in ``gym_rollouts/exit_codes.py``).
Context-length is *not* an error: it ends a rollout as ``incomplete`` (see adapter).
"""

from __future__ import annotations


class GymRolloutsError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = False


class ConfigError(GymRolloutsError):
    """The user's configuration or command line cannot be used as given."""


class InputError(GymRolloutsError):
    """The task JSONL is malformed (carries every problem found, with line numbers)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class TransportError(GymRolloutsError):
    """The request never produced an HTTP answer: connect error, timeout, disconnect."""

    retryable = True

    def __init__(self, message: str, *, server: str | None = None, kind: str = "connect",
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.server = server
        self.kind = kind  # "connect" | "timeout" | "disconnected" | "stalled" (abandoned by the router)
        self.reason = reason  # for "connect": "refused" | "dns" | None (other), e.g. for doctor


class ServerStatusError(GymRolloutsError):
    """The server answered with a non-2xx status; retryable for 429 and every 5xx."""

    def __init__(self, status: int, body: str, *, server: str | None = None, message: str | None = None,
                 retry_after: str | None = None) -> None:
        self.status = status
        self.body = body
        self.server = server
        self.retry_after = retry_after  # the answer's Retry-After header as sent (router/retry.py reads it)
        self.server_message = message or body
        super().__init__(f"HTTP {status} from {server or 'server'}: {self.server_message}")

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status == 429 or self.status >= 500


class ProtocolError(GymRolloutsError):
    """The server answered 2xx but with something we cannot use (bad JSON, missing or
    inconsistent token ids, ...). Never silently repaired."""


class MalformedReplyError(ProtocolError):
    """A 2xx answer whose body breaks the protocol (not JSON, wrong shape, inconsistent token data
    or usage) from a vLLM server or a NeMo Gym environment: the server is failing, like one that
    answers 5xx; retried elsewhere under the ``malformed`` budget, then reported (naming
    ``server``)."""

    retryable = True

    def __init__(self, message: str, *, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class ToolSupportError(ServerStatusError):
    """vLLM refused a tools request because it runs without a tool-call parser."""


class ResourceError(GymRolloutsError):
    """A resource (environment) failed: tool execution crashed, verifier raised."""


class EnvironmentCallError(ResourceError):
    """A call to a remote environment failed for good (after the retries its error allowed): names
    the environment, the call (``seed_session``, a tool, ``verify``) and the server."""

    def __init__(self, message: str, *, environment: str, call: str, server: str | None = None,
                 cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.environment = environment
        self.call = call
        self.server = server
        self.cause = cause


class RolloutError(GymRolloutsError):
    """A rollout failed for good; names the task and rollout it belongs to."""

    def __init__(self, message: str, *, task_index: int, rollout_index: int, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.task_index = task_index
        self.rollout_index = rollout_index
        self.cause = cause


class StartupError(ConfigError):
    """The configured servers cannot be used (unreachable, wrong URL form, model not served);
    ``status`` is the HTTP status when a server answered with an unusable one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunStopped(GymRolloutsError):
    """The run stopped part-way for a reason no rollout can get past. What was written is kept
    (a torn last line is repaired on resume); after the fix, the same command with
    ``resume_from_cache=true`` continues. ``exit_code``: see ``gym_rollouts/exit_codes.py``."""

    exit_code: int = 2


class FleetDeadError(RunStopped):
    """No policy server answered anything (requests or health probes) for the dead-fleet time."""

    exit_code = 4


class OutputWriteError(RunStopped):
    """Writing an output file failed part-way (disk full, read-only file system, I/O error)."""

    exit_code = 5


class InputChangedError(RunStopped):
    """The input file changed (rewritten, truncated, replaced) while the run was reading it."""

    exit_code = 6
