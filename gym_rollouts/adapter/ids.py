"""Identifiers for Responses-API objects (``resp_``, ``msg_``, ``rs_``, ``fc_``)."""

from __future__ import annotations

import os


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"
