"""gym_rollouts: fast, sturdy RL rollout collection against vLLM servers.

Data flows one way: config -> engine -> agent -> adapter -> router -> transport;
results flow back to the sink. See README.md and docs/ for the user-facing story.
"""

__version__ = "0.1.0"
