"""Changing a condition list the way Kubernetes expects, as a pure function.

``lastTransitionTime`` moves only when a condition's status changes (not when its reason or
message is refined), ``observedGeneration`` is always the generation acted on, and messages
are truncated so a long stack trace cannot bloat the object. Time is an argument, so the
tests can compare whole lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kubetune.api import v1alpha1

#: Longest condition message kept; the API allows 32 KiB, people read a few lines.
MAX_MESSAGE_LENGTH = 1024
_ELLIPSIS = " ... (truncated)"


def truncate(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Shorten ``message`` to at most ``limit`` characters, saying that it was cut.

    Args:
        message: any text.
        limit: maximum length of the result.

    Returns:
        ``message`` itself when short enough, else its start and a ``(truncated)`` marker.
    """
    if len(message) <= limit:
        return message
    return message[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def find(conditions: Sequence[v1alpha1.Condition], type_: str) -> v1alpha1.Condition | None:
    """The condition of a type, or None."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[v1alpha1.Condition], type_: str) -> bool:
    """Whether the condition of a type is present with status True."""
    condition = find(conditions, type_)
    return condition is not None and condition.status == v1alpha1.ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[v1alpha1.Condition],
    type_: str,
    status: v1alpha1.ConditionStatus | bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> tuple[list[v1alpha1.Condition], bool]:
    """Set one condition, keeping its transition time unless its status changes.

    Args:
        conditions: the current list (not modified).
        type_: condition type, e.g. ``Ready``.
        status: True/False/Unknown (a bool is converted).
        reason: CamelCase reason from :mod:`kubetune.reconcile.reasons`.
        message: human-readable details (truncated to :data:`MAX_MESSAGE_LENGTH`).
        generation: ``metadata.generation`` the condition was computed from.
        now: the current time, used as ``lastTransitionTime`` on a status change.

    Returns:
        The new list (same order, new types appended) and whether anything changed.
    """
    if isinstance(status, bool):
        status = v1alpha1.ConditionStatus.TRUE if status else v1alpha1.ConditionStatus.FALSE
    message = truncate(message)
    current = find(conditions, type_)
    if current is None:
        new = v1alpha1.Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=now,
        )
        return [*conditions, new], True
    transition = current.last_transition_time if current.status == status else now
    new = current.model_copy(
        update={
            "status": status,
            "reason": reason,
            "message": message,
            "observed_generation": generation,
            "last_transition_time": transition,
        }
    )
    if new == current:
        return list(conditions), False
    return [new if c.type == type_ else c for c in conditions], True


def remove_condition(conditions: Sequence[v1alpha1.Condition], type_: str) -> tuple[list[v1alpha1.Condition], bool]:
    """Drop the condition of a type.

    Args:
        conditions: the current list (not modified).
        type_: the condition type to drop.

    Returns:
        The new list and whether a condition was removed.
    """
    kept = [c for c in conditions if c.type != type_]
    return kept, len(kept) != len(conditions)
