"""Generate the CustomResourceDefinitions from the pydantic models.

The models in ``kubetune.api.v1alpha1`` are the single source of truth. pydantic's JSON schema
is close to what Kubernetes wants but not quite: the API server needs a *structural* schema
(no ``$ref``, no ``anyOf`` of unrelated types, ``additionalProperties`` only for maps), boolean
``exclusiveMinimum``, and ``x-kubernetes-int-or-string`` for int-or-string fields. This module
performs that translation and adds what only a CRD has: names, printer columns, subresources.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kubetune.api import v1alpha1
from kubetune.api.v1alpha1.base import CEL_KEY

#: Keys of a JSON schema node that survive into the CRD.
_KEPT_KEYS = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}

#: Child names add suffixes such as "-prepare" to the resource name; keep room for them.
MAX_NAME_LENGTH = 50


@dataclass(frozen=True)
class PrinterColumn:
    """One ``kubectl get`` column."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_k8s(self) -> dict[str, Any]:
        """The column as it appears in ``additionalPrinterColumns``."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class Kind:
    """A custom resource kind: its model classes and the CRD-only metadata."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)

    @property
    def crd_name(self) -> str:
        """metadata.name of the CRD: <plural>.<group>."""
        return f"{self.plural}.{v1alpha1.GROUP}"

    @property
    def file_name(self) -> str:
        """File name under crds/, in the controller-gen convention."""
        return f"{v1alpha1.GROUP}_{self.plural}.yaml"


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

KINDS = (
    Kind(
        kind="FineTuneJob",
        plural="finetunejobs",
        short_names=("ftj",),
        spec=v1alpha1.FineTuneJobSpec,
        status=v1alpha1.FineTuneJobStatus,
        description=v1alpha1.FineTuneJob.__doc__ or "",
        columns=(
            PrinterColumn("Phase", ".status.phase", description="Where the job is in its life."),
            PrinterColumn("Method", ".spec.method", description="Fine-tuning method."),
            PrinterColumn("Progress", ".status.progress.summary", description="Training steps done."),
            PrinterColumn("Loss", ".status.progress.loss", "number", "Latest training loss."),
            PrinterColumn("ETA", ".status.progress.eta", description="Estimated time left.", priority=1),
            PrinterColumn("Base", ".spec.baseModel.uri", description="Base model.", priority=1),
            AGE,
        ),
    ),
    Kind(
        kind="ModelDeployment",
        plural="modeldeployments",
        short_names=("mdep",),
        spec=v1alpha1.ModelDeploymentSpec,
        status=v1alpha1.ModelDeploymentStatus,
        description=v1alpha1.ModelDeployment.__doc__ or "",
        columns=(
            PrinterColumn("Phase", ".status.phase", description="Where the deployment is in its life."),
            PrinterColumn("Backend", ".spec.backend", description="Triton backend."),
            PrinterColumn("Quantization", ".spec.quantization", description="Engine precision."),
            PrinterColumn("Ready", ".status.ready", description="Ready replicas / replicas."),
            PrinterColumn("Endpoint", ".status.endpoint.http", description="In-cluster HTTP URL."),
            PrinterColumn("Revision", ".status.revision", description="Serving revision.", priority=1),
            AGE,
        ),
    ),
)


class SchemaError(ValueError):
    """A model uses a construct that has no structural OpenAPI equivalent."""


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    node = dict(node)
    if "$ref" in node:
        target = _structural(defs[node.pop("$ref").rsplit("/", 1)[-1]], defs)
        node = _merge(target, node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node = _merge(_structural(node.pop("allOf")[0], defs), node)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEPT_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties" and value is False:
            continue  # extra="forbid": the API server prunes unknown fields instead
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default" and value is None:
            continue
        else:
            out[key] = copy.deepcopy(value)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn ``Optional[X]`` into X and ``int | str`` into int-or-string."""
    options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
    if node.get("x-kubernetes-int-or-string"):
        return node
    if len(options) != 1:
        raise SchemaError(f"anyOf with {len(options)} non-null options has no structural form: {options}")
    return _merge(_structural(options[0], defs), node)


def _merge(target: dict[str, Any], siblings: dict[str, Any]) -> dict[str, Any]:
    """Overlay a field's own keys on its type's schema; CEL rules of both are kept."""
    merged = dict(target)
    for key, value in siblings.items():
        if key == "title":
            continue
        if key == CEL_KEY and CEL_KEY in merged:
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = value
    return merged


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of a model, with descriptions, defaults and CEL rules.

    Args:
        model: a pydantic model class from ``kubetune.api``.

    Returns:
        The schema as a plain dict, ready for ``openAPIV3Schema``.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def crd(kind: Kind) -> dict[str, Any]:
    """Render the CustomResourceDefinition of one kind.

    Args:
        kind: the kind's description from :data:`KINDS`.

    Returns:
        The CRD manifest.
    """
    spec_schema = openapi_schema(kind.spec)
    status_schema = openapi_schema(kind.status)
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description.strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: kubetune.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind: {kind.kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                "(names of the Jobs and Services it creates add suffixes)",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "annotations": {"kubetune.dev/generated-by": "kubetune crds (do not edit by hand)"},
            "labels": {"app.kubernetes.io/part-of": "kubetune"},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["kubetune"],
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_k8s() for c in kind.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_all() -> dict[str, str]:
    """All CRDs as YAML text, keyed by file name."""
    header = "# Generated by `make crds` (kubetune.crdgen) from operator/kubetune/api. Do not edit.\n"
    return {
        kind.file_name: header + yaml.safe_dump(crd(kind), sort_keys=False, width=120, allow_unicode=True)
        for kind in KINDS
    }


def write(output_dir: Path) -> list[Path]:
    """Write every CRD into ``output_dir``.

    Args:
        output_dir: target directory, created if missing.

    Returns:
        The paths written.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = output_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``kubetune crds``."""
    parser.add_argument("--output-dir", type=Path, default=Path("crds"), help="where to write (default: crds)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kubetune crds``: write every CRD and say where."""
    for path in write(args.output_dir):
        print(f"wrote {path}")
    return 0
