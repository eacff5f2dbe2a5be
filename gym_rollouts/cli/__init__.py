"""Thin Hydra entry points; the only package that prints."""
