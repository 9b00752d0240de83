"""Fixtures of the operator's unit tests: example specs and render contexts.

Why this module exists: most render and reconcile tests start from the shipped examples (so a
change to an example is checked by the same tests) or from a small spec with a few fields
changed; these helpers build both without repeating the boilerplate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.api import v1alpha1
from kubetune.render import context, names

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

MINIMAL: dict[str, Any] = {
    "baseModel": {"uri": "hf://org/base@main"},
    "dataset": {"uri": "pvc://data/dialogues.jsonl"},
    "output": {"uri": "pvc://artifacts/run"},
}


def example(name: str) -> dict[str, Any]:
    """The manifest of ``examples/finetunejob-<name>.yaml``."""
    return yaml.safe_load((EXAMPLES / f"finetunejob-{name}.yaml").read_text())


def spec_of(overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> v1alpha1.FineTuneJobSpec:
    """A validated spec: ``base`` (default: a minimal LoRA job) with top-level keys replaced."""
    return v1alpha1.FineTuneJobSpec.model_validate({**(base or MINIMAL), **(overrides or {})})


def make_context(spec: v1alpha1.FineTuneJobSpec, name: str = "demo", **kwargs: Any) -> context.Context:
    """A render context for ``spec`` owned by ``ns/name``."""
    base_uri = kwargs.pop("base_model_uri", spec.base_model.uri or "pvc://models/base")
    return context.Context(
        owner=names.Owner(name, "ns", "uid-123"), spec=spec, image="trainer:test", base_model_uri=base_uri, **kwargs
    )


@pytest.fixture(name="example")
def example_fixture() -> Callable[[str], dict[str, Any]]:
    """Load ``examples/finetunejob-<name>.yaml``."""
    return example


@pytest.fixture(name="spec_of")
def spec_of_fixture() -> Callable[..., v1alpha1.FineTuneJobSpec]:
    """Build a validated spec from a minimal LoRA job with some top-level fields replaced."""
    return spec_of


@pytest.fixture
def ctx_of() -> Callable[..., context.Context]:
    """Build a context from an example name or a spec."""

    def build(source: str | v1alpha1.FineTuneJobSpec, **kwargs: Any) -> context.Context:
        if isinstance(source, str):
            manifest = example(source)
            kwargs.setdefault("name", manifest["metadata"]["name"])
            source = v1alpha1.FineTuneJobSpec.model_validate(manifest["spec"])
        return make_context(source, **kwargs)

    return build
