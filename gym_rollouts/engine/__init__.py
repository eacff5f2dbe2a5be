"""The collection engine: worker pool, retries per rollout, live stats."""
