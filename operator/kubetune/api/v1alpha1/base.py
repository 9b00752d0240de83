"""Shared building blocks of the v1alpha1 API: the model base class, CEL rules and conditions.

Every resource model derives from :class:`KubeModel` so that YAML field names are camelCase,
unknown fields are rejected, and cross-field rules written as CEL travel with the class into the
generated CRD (``crdgen`` reads them from the JSON schema).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel

GROUP = "kubetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Key under which CEL rules are emitted in the OpenAPI schema (see Kubernetes "CRD validation rules").
CEL_KEY = "x-kubernetes-validations"


def Rule(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:  # noqa: N802
    """Build one ``x-kubernetes-validations`` entry.

    Args:
        rule: the CEL expression; ``self`` is the object the rule is attached to.
        message: shown to the user on rejection; it names the offending field.
        field_path: JSON path, relative to ``self``, of the field the error is reported on.
        reason: a Kubernetes ``FieldValue*`` reason, e.g. ``FieldValueForbidden``.

    Returns:
        The rule as a JSON-schema fragment.
    """
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def _rules_of(cls: type) -> list[dict[str, str]]:
    """The ``cel_rules`` declared along a class hierarchy, base classes first."""
    rules: list[dict[str, str]] = []
    for klass in reversed(cls.__mro__):
        rules.extend(klass.__dict__.get("cel_rules", []))
    return rules


def _collect_cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Add the ``cel_rules`` declared along the class hierarchy to the model's schema."""
    rules = _rules_of(cls)
    if rules:
        schema[CEL_KEY] = rules


class KubeModel(BaseModel):
    """Base of every API model: camelCase aliases, no unknown fields, CEL rules from ``cel_rules``."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        json_schema_extra=_collect_cel_rules,
    )

    cel_rules: ClassVar[list[dict[str, str]]] = []

    @model_validator(mode="after")
    def _check_cel_rules(self, info: ValidationInfo) -> KubeModel:
        """Evaluate this class's CEL rules when asked (``context={"cel": True}``).

        The API server enforces the same rules at admission; evaluating them here lets
        ``kubetune run --local`` and the trainer reject what a cluster would reject.
        The operator skips it: what it reads was admitted already.
        """
        rules = _rules_of(type(self))
        if rules and isinstance(info.context, dict) and info.context.get("cel"):
            from kubetune.api.v1alpha1 import cel

            cel.check(rules, self.to_k8s())
        return self

    def to_k8s(self) -> dict[str, Any]:
        """Serialize the way the API server stores it: camelCase, enums as strings, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def section(model: type[BaseModel], description: str) -> Any:
    """A nested object that is always present, defaulted to ``{}`` so the API server fills it.

    Args:
        model: the nested model class.
        description: the field's ``kubectl explain`` text.

    Returns:
        A pydantic ``Field`` with a default factory and ``default: {}`` in the CRD schema.
    """
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


def immutable(description: str, name: str, **kwargs: Any) -> Any:
    """A field that may be set at creation only (a CEL transition rule on the field).

    Args:
        description: the field's ``kubectl explain`` text.
        name: the field's path as the user writes it, used in the error message.
        **kwargs: passed on to ``pydantic.Field`` (e.g. ``default``).

    Returns:
        A pydantic ``Field`` carrying the transition rule.
    """
    rule: dict[str, Any] = Rule("self == oldSelf", f"{name} is immutable once set; create a new resource instead")
    extra: dict[str, Any] = {CEL_KEY: [rule]}
    return Field(description=description, json_schema_extra=extra, **kwargs)


def describe_errors(err: Exception, prefix: str = "") -> str:
    """One ``field.path: problem`` entry per validation error, joined by ``; ``.

    Every place that reports an invalid spec (the operator's InvalidSpec condition, the trainer,
    ``kubetune run --local``) names fields the same way: by their YAML path.

    Args:
        err: a ``pydantic.ValidationError`` (anything else is shown as its text).
        prefix: prepended to each path, e.g. ``spec.`` when ``err`` came from validating a spec.

    Returns:
        The message.
    """
    if not isinstance(err, ValidationError):
        return str(err)
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())


class StrEnum(enum.StrEnum):
    """A string enum whose values are what users write in YAML."""


class ConditionStatus(StrEnum):
    """Status of a condition, as in metav1.Condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One aspect of the resource's state, shaped like metav1.Condition."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready, Training, Succeeded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation of the spec this condition was computed from.",
    )
    last_transition_time: datetime = Field(description="When the condition last changed status (RFC 3339).")
    reason: str = Field(
        description="CamelCase reason for the last transition; see docs/operations.md for the list.",
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
    )
    message: str = Field(default="", max_length=32768, description="Human readable details.")


class LocalObjectReference(KubeModel):
    """A reference to an object in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the referenced object in the same namespace.",
    )


# URI schemes. Shapes are checked at admission by these patterns; the trainer resolves them.
HF_URI = r"hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?"
PVC_URI = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?"
S3_URI = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"


def uri_pattern(*alternatives: str) -> str:
    """Anchor a union of URI patterns into one ``pattern`` for the CRD schema."""
    return "^(" + "|".join(alternatives) + ")$"


MODEL_URI_PATTERN = uri_pattern(HF_URI, PVC_URI, S3_URI)
STORAGE_URI_PATTERN = uri_pattern(PVC_URI, S3_URI)


def conditions_field() -> Any:
    """The ``conditions`` list of a status: a list-map keyed by ``type``, as in core APIs."""
    return Field(
        default_factory=list,
        description="Detailed state, one entry per condition type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
