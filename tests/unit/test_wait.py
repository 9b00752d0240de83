"""wait_for returns what passed, and its failure says what was last seen."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.wait import WaitTimeout, wait_for


def test_returns_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_for(lambda: next(counter) >= 3 and "done", timeout=5, interval=0.01) == "done"


def test_returns_observed_item_of_ok_tuple() -> None:
    calls = itertools.count(1)

    def job() -> tuple[bool, dict[str, int]]:
        n = next(calls)
        return n == 2, {"call": n}

    assert wait_for(job, timeout=5, interval=0.01) == {"call": 2}


def test_timeout_reports_last_value_and_description() -> None:
    pods: list[str] = []
    with pytest.raises(AssertionError) as err:
        wait_for(lambda: pods, timeout=0.2, interval=0.05, description="pods to appear")
    message = str(err.value)
    assert "pods to appear" in message
    assert "last observed:\n[]" in message
    assert isinstance(err.value, WaitTimeout)
    assert err.value.attempts >= 2


def test_timeout_reports_observed_item_of_tuple() -> None:
    calls = itertools.count(1)
    with pytest.raises(WaitTimeout) as err:
        wait_for(lambda: (False, {"phase": "Pending", "call": next(calls)}), timeout=0.15, interval=0.05)
    assert "'phase': 'Pending'" in str(err.value)
    assert err.value.observed["call"] == err.value.attempts


def test_ignored_exception_is_reported() -> None:
    def missing() -> None:
        raise LookupError('jobs.batch "train" not found')

    with pytest.raises(WaitTimeout) as err:
        wait_for(missing, timeout=0.1, interval=0.02, ignore=(LookupError,))
    assert 'LookupError: jobs.batch "train" not found' in str(err.value)


def test_other_exceptions_propagate_at_once() -> None:
    def broken() -> None:
        raise TypeError("bug in the predicate")

    start = time.monotonic()
    with pytest.raises(TypeError):
        wait_for(broken, timeout=10, ignore=(LookupError,))
    assert time.monotonic() - start < 1


def test_zero_timeout_still_calls_once() -> None:
    assert wait_for(lambda: 42, timeout=0) == 42
    with pytest.raises(WaitTimeout) as err:
        wait_for(lambda: 0, timeout=0)
    assert err.value.attempts == 1


def test_long_observations_are_truncated() -> None:
    with pytest.raises(WaitTimeout) as err:
        wait_for(lambda: (False, "x" * 10_000), timeout=0)
    assert "more characters]" in str(err.value)
    assert len(str(err.value)) < 5000


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        wait_for(lambda: True, timeout=-1)
    with pytest.raises(ValueError):
        wait_for(lambda: True, interval=0)
