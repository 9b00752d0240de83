"""set_condition: transition times, observedGeneration, truncation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubetune.api import v1alpha1
from kubetune.reconcile import conditions

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def test_new_condition_is_appended_with_now() -> None:
    out, changed = conditions.set_condition([], "Ready", False, "Preparing", "msg", 3, T0)
    assert changed
    assert out == [
        v1alpha1.Condition(
            type="Ready",
            status="False",
            reason="Preparing",
            message="msg",
            observed_generation=3,
            last_transition_time=T0,
        )
    ]


def test_same_status_keeps_the_transition_time_but_updates_reason() -> None:
    start, _ = conditions.set_condition([], "Ready", False, "Preparing", "a", 1, T0)
    out, changed = conditions.set_condition(start, "Ready", False, "Training", "b", 2, T1)
    assert changed
    assert out[0].last_transition_time == T0
    assert (out[0].reason, out[0].message, out[0].observed_generation) == ("Training", "b", 2)


def test_status_change_moves_the_transition_time() -> None:
    start, _ = conditions.set_condition([], "Ready", False, "Training", "a", 1, T0)
    out, changed = conditions.set_condition(start, "Ready", True, "Succeeded", "a", 1, T1)
    assert changed and out[0].last_transition_time == T1 and out[0].status == v1alpha1.ConditionStatus.TRUE


def test_identical_update_reports_no_change_and_keeps_order() -> None:
    start, _ = conditions.set_condition([], "A", True, "R", "m", 1, T0)
    start, _ = conditions.set_condition(start, "B", True, "R", "m", 1, T0)
    out, changed = conditions.set_condition(start, "A", True, "R", "m", 1, T1)
    assert not changed
    assert [c.type for c in out] == ["A", "B"] and out == start


def test_long_messages_are_truncated() -> None:
    out, _ = conditions.set_condition([], "Failed", True, "X", "x" * 5000, 1, T0)
    assert len(out[0].message) == conditions.MAX_MESSAGE_LENGTH
    assert out[0].message.endswith("(truncated)")
    assert conditions.truncate("short") == "short"


def test_remove_and_query() -> None:
    start, _ = conditions.set_condition([], "Suspended", True, "Suspended", "", 1, T0)
    assert conditions.is_true(start, "Suspended") and not conditions.is_true(start, "Ready")
    out, removed = conditions.remove_condition(start, "Suspended")
    assert removed and out == []
    assert conditions.remove_condition(out, "Suspended") == ([], False)
