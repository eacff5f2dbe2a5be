"""HTTP transport: the only package that imports aiohttp on the client side."""

from gym_rollouts.transport.client import HttpTransport

__all__ = ["HttpTransport"]
