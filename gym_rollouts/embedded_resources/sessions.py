"""Session cookies and per-session state, the way NeMo Gym's resources servers keep them.

NeMo Gym puts a signed Starlette session cookie named `<ServerClass>___<config name>` on every
response; a request without a valid one gets a fresh session id (uuid4). Here the cookie value is
`<session id>.<HMAC-SHA256 of it>` under a secret drawn once per `SessionSigner` (so a restarted
server refuses the old cookies and hands out fresh sessions, just as its in-memory state is gone).

`SessionStore` holds the one piece of state our environment has, a counter per session id. Like
NeMo Gym's stateful example, an entry appears when /seed_session or a counter tool first sees the
session and is never dropped: `alive` counts them (leak tests), `issued` counts ids handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

COOKIE_PREFIX = "EmbeddedResourcesServer___"
COOKIE_MAX_AGE_S = 14 * 24 * 3600  # Starlette's default session lifetime


def cookie_name(server_name: str) -> str:
    return COOKIE_PREFIX + server_name


class SessionSigner:
    """Signs session ids into cookie values and checks them back."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.issued = 0

    def _mac(self, session_id: str) -> str:
        digest = hmac.new(self._secret, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, session_id: str) -> str:
        return f"{session_id}.{self._mac(session_id)}"

    def unsign(self, value: str | None) -> str | None:
        """The session id inside a cookie value, or None when it is absent or forged."""
        if not value or "." not in value:
            return None
        session_id, _, mac = value.rpartition(".")
        return session_id if session_id and hmac.compare_digest(mac, self._mac(session_id)) else None

    def resolve(self, cookie_value: str | None) -> tuple[str, bool]:
        """(the session of a request, whether it is new): the cookie's, else a fresh id."""
        session_id = self.unsign(cookie_value)
        if session_id is not None:
            return session_id, False
        self.issued += 1
        return str(uuid.uuid4()), True


class SessionStore:
    """The counter of each session that has state."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def seed(self, session_id: str, initial: int) -> None:
        self._counters.setdefault(session_id, initial)  # a second seed keeps the count (as NeMo Gym)

    def add(self, session_id: str, amount: int) -> None:
        self._counters[session_id] = self._counters.get(session_id, 0) + amount

    def value(self, session_id: str) -> int:
        return self._counters.setdefault(session_id, 0)

    def known(self, session_id: str) -> int | None:
        """The counter of a session that has state, without creating it."""
        return self._counters.get(session_id)

    @property
    def alive(self) -> int:
        return len(self._counters)
