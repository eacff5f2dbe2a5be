"""HTTP transport: the run's client pools (native HTTP/1.1 in http1.py, or aiohttp) and the error
mapping; the only package that speaks HTTP on the client side."""

from gym_rollouts.transport.client import HttpTransport

__all__ = ["HttpTransport"]
