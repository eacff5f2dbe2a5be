"""Helpers for tests: starting real servers as subprocesses (see ``real_vllm``)."""
