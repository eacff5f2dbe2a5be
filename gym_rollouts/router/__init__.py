"""Routing: which server serves each model call (pure policy) and the dispatcher that applies it."""
