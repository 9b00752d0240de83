"""Polling with failure messages that say what was last seen.

Why this module exists: tests against a control plane wait for things to converge (a Job
completes, a Deployment becomes Available). A bare ``assert`` after a ``sleep`` is flaky,
and a loop that ends with "timed out" hides why. :func:`wait_for` polls a predicate and,
on timeout, raises an :class:`AssertionError` that reports what the predicate last
observed, so a failing test explains itself.

A predicate is a callable with no arguments. It reports one of two ways:

* return a value: truthy means done (that value is returned), falsy means not yet and
  the value itself is the observation (e.g. a list of pods that is still empty);
* return ``(ok, observed)``, a 2-tuple whose first item is a ``bool``: ``ok`` decides,
  ``observed`` is what the timeout message shows and what is returned on success.
  Use it when the thing worth reporting is not the thing you test, e.g.
  ``lambda: (job_condition(job) == "Complete", job["status"])``.

Exceptions listed in ``ignore`` (e.g. a "not found" while an object is being created)
count as "not yet"; the last one is reported on timeout. Other exceptions propagate.
"""

from __future__ import annotations

import pprint
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WaitTimeout", "wait_for"]

_MAX_REPORT_CHARS = 4000


class WaitTimeout(AssertionError):  # noqa: N818 - it is the assertion a test fails with
    """Raised by :func:`wait_for` when the predicate did not pass in time.

    Attributes:
        description: What was waited for.
        observed: The last observation (value, ``observed`` item, or exception).
        attempts: How many times the predicate was called.
    """

    def __init__(self, message: str, description: str, observed: Any, attempts: int) -> None:
        super().__init__(message)
        self.description = description
        self.observed = observed
        self.attempts = attempts


def _split(result: Any) -> tuple[bool, Any]:
    """Interpret a predicate result as ``(ok, observed)``.

    Args:
        result: What the predicate returned.

    Returns:
        Whether the wait is over, and the observation to report or return.
    """
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        return result[0], result[1]
    return bool(result), result


def _describe(observed: Any) -> str:
    """Render an observation for the timeout message, shortened if huge.

    Args:
        observed: The last observation.

    Returns:
        A readable, bounded string.
    """
    if isinstance(observed, BaseException):
        text = f"{type(observed).__name__}: {observed}"
    else:
        text = pprint.pformat(observed, width=100, sort_dicts=False)
    if len(text) > _MAX_REPORT_CHARS:
        cut = len(text) - _MAX_REPORT_CHARS
        text = f"{text[:_MAX_REPORT_CHARS]}... [{cut} more characters]"
    return text


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.25,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``predicate`` until it passes, or fail with what it last observed.

    The predicate is always called at least once, and once more at the deadline if the
    previous call ended before it, so a short timeout still gets a final look.

    Args:
        predicate: No-argument callable; see the module docstring for what it returns.
        timeout: Seconds to keep trying (must be >= 0).
        interval: Seconds to sleep between calls (must be > 0).
        description: What is awaited, for the failure message; defaults to the
            predicate's name.
        ignore: Exception types that mean "not yet" instead of failing at once.

    Returns:
        The truthy value the predicate returned, or ``observed`` from an
        ``(ok, observed)`` tuple.

    Raises:
        WaitTimeout: (an ``AssertionError``) the predicate did not pass within
            ``timeout``; the message names ``description``, the elapsed time, the
            number of attempts and the last observation.
        ValueError: ``timeout`` or ``interval`` is out of range.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    what: str = description or getattr(predicate, "__name__", None) or repr(predicate)
    start = time.monotonic()
    deadline = start + timeout
    attempts = 0
    observed: Any = None
    while True:
        attempts += 1
        try:
            ok, observed = _split(predicate())
        except ignore as exc:
            ok, observed = False, exc
        if ok:
            return observed
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    elapsed = time.monotonic() - start
    message = (
        f"timed out after {elapsed:.1f}s (limit {timeout:g}s, {attempts} attempts) "
        f"waiting for {what}; last observed:\n{_describe(observed)}"
    )
    raise WaitTimeout(message, what, observed, attempts)
