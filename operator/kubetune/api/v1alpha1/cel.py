"""Evaluate the CRDs' CEL validation rules in Python, for validation away from the API server.

The rules are written once, on the models (``cel_rules``), and emitted into the CRDs. A local
run (``kubetune run --local``) has no API server to enforce them, so this module evaluates the
very same expressions with cel-python. Transition rules (``oldSelf``) only make sense on update
and are left to the API server.
"""

from __future__ import annotations

import functools
from typing import Any

import celpy


@functools.lru_cache(maxsize=256)
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def check(rules: list[dict[str, str]], obj: dict[str, Any]) -> None:
    """Raise on the first rule that ``obj`` (the camelCase form of a model) breaks.

    Args:
        rules: ``x-kubernetes-validations`` entries (rule, message).
        obj: the object the rules are attached to, as the API server would see it.

    Raises:
        ValueError: with the rule's message, which names the offending field.
    """
    activation = {"self": celpy.json_to_cel(obj)}
    for rule in rules:
        if "oldSelf" in rule["rule"]:
            continue
        result = _program(rule["rule"]).evaluate(activation)
        if isinstance(result, celpy.CELEvalError) or not bool(result):
            raise ValueError(rule["message"])
