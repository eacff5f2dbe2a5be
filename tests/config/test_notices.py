"""``Notices``: ordered, one line each, each line once; ``unseen`` for a caller printing several."""

from __future__ import annotations

from gym_rollouts.config.notices import Notices, unseen


def test_order_dedup_and_one_line():
    notices = Notices()
    for message in ("b first", "a second", "b first", "multi\nline   text\n"):
        notices.add(message)
    assert notices.lines == ("b first", "a second", "multi line text")
    assert len(notices) == 3 and "a second" in notices and list(notices) == list(notices.lines)
    notices.add("")
    assert len(notices) == 3


def test_unseen_across_compositions():
    printed: set[str] = set()
    first, second = Notices(), Notices()
    first.extend(["loaded env.yaml", "x"])
    second.extend(["x", "loaded env.yaml", "y"])
    assert unseen(first, printed) == ["loaded env.yaml", "x"]
    assert unseen(second, printed) == ["y"]
    assert unseen(second, printed) == []


def test_instances_share_nothing():
    a, b = Notices(), Notices()
    a.add("only a")
    assert len(b) == 0
