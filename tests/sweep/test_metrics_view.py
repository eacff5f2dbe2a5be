"""Reading key figures out of either aggregate-metrics shape (pure)."""

from gym_rollouts.sweep.metrics_view import FIGURES, find_pass_at_k, key_figures


def test_summary_shape():
    doc = {"summary": {"rollouts": 8, "failures": 1, "mean_reward": 0.5, "rollouts_per_s": 4.0,
                       "output_tokens_per_s": 100.0, "elapsed_s": 2.0}, "servers": []}
    assert key_figures(doc) == doc["summary"]


def test_agent_list_shape_weights_reward_by_count_and_names_pass_at_k_per_agent():
    doc = [
        {"agent_ref": {"name": "a"}, "agent_metrics": {"count": 3, "failures": 1, "mean/reward": 1.0,
                                                       "pass@1/reward": 100.0, "pass@2/reward": 100.0,
                                                       "pass@1[avg-of-2]/reward": 100.0,
                                                       "rollouts_per_s": 1.5, "output_tokens_per_s": 10.0}},
        {"agent_ref": {"name": "b"}, "agent_metrics": {"count": 1, "failures": 0, "mean/reward": 0.0,
                                                       "pass@1/reward": 0.0,
                                                       "rollouts_per_s": 0.5, "output_tokens_per_s": 2.0}},
    ]
    got = key_figures(doc)
    assert got["rollouts"] == 4 and got["failures"] == 1
    assert got["mean_reward"] == 0.75
    assert got["rollouts_per_s"] == 2.0 and got["output_tokens_per_s"] == 12.0
    assert got["a/pass@1"] == 100.0 and got["b/pass@1"] == 0.0 and got["pass@2"] == 100.0
    assert not any("avg-of" in k for k in got)


def test_run_section_wins_for_counts_and_rates():
    doc = [{"agent_ref": {"name": "a"}, "agent_metrics": {"count": 2, "mean/reward": 0.5, "rollouts_per_s": 9.0},
            "run": {"rollouts": 2, "failures": 3, "rollouts_per_s": 1.0, "elapsed_s": 2.0}}]
    got = key_figures(doc)
    assert (got["failures"], got["rollouts_per_s"], got["elapsed_s"]) == (3, 1.0, 2.0)
    assert got["output_tokens_per_s"] is None


def test_absent_or_unknown_metrics_give_none():
    for doc in (None, {}, [], "x", {"summary": {}}):
        got = key_figures(doc)
        assert all(got[k] is None for k in FIGURES)


def test_pass_at_k_found_under_a_nested_summary_section():
    assert find_pass_at_k({"summary": {"pass@4": 0.5}, "x": {"pass@k": 1}}) == {"pass@4": 0.5}
