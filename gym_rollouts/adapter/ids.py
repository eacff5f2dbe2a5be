"""Identifiers for Responses-API objects (``resp_``, ``msg_``, ``rs_``, ``fc_``)."""

from __future__ import annotations

import random


def new_id(prefix: str) -> str:
    # 96 random bits (24 hex digits) from the (fork-safe, urandom-seeded) ``random`` module: ids
    # need uniqueness, not secrecy, and os.urandom costs a syscall per id (was a top cost of the
    # hot path); randbytes().hex() is the cheapest way to spell them (no int formatting)
    return f"{prefix}_{random.randbytes(12).hex()}"
