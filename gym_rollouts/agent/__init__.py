"""The agent loop: model turns and tool calls until an answer, then verification."""
