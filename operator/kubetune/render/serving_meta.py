"""Names, labels and pod-label pass-through of a ModelDeployment's children.

Why this module exists: every child of a ModelDeployment (build and smoke-test Jobs, the Triton
Deployment, its Service and HPA, the engine-cache ConfigMap) must be findable by label, garbage
collected with its owner and named deterministically within Kubernetes' 63-character limits. The
generic pieces (``names.fit``, owner references, pod security contexts) are shared with the
FineTuneJob renderers; this module adds what is particular to serving.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.api.v1alpha1 import labels as well_known
from kubetune.render import names

MODELDEPLOYMENT_LABEL = well_known.MODELDEPLOYMENT
REVISION_LABEL = well_known.REVISION

#: ``app.kubernetes.io/component`` values; also the ``<component>`` of the pod-label annotations.
BUILD = "build"
SMOKE = "smoke"
SERVER = "server"
ENGINES = "engines"
POD_COMPONENTS = (BUILD, SMOKE, SERVER)

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Parent:
    """The ModelDeployment whose children are rendered.

    Attributes:
        name: metadata.name.
        namespace: metadata.namespace.
        uid: metadata.uid (for owner references).
        annotations: metadata.annotations (for the pod-label pass-through).
    """

    name: str
    namespace: str
    uid: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> names.Owner:
        """The owner reference identity of the ModelDeployment."""
        return names.Owner(self.name, self.namespace, self.uid, kind="ModelDeployment")


def dns_base(name: str) -> str:
    """The ModelDeployment's name made a valid DNS-1035 label prefix (Service names need one).

    Names with dots or a leading digit (allowed for custom resources) are cleaned and get a
    short hash of the original, so two names never map to the same base.

    Args:
        name: the ModelDeployment's name.

    Returns:
        ``name`` itself when it already is a DNS-1035 label of at most 63 characters.
    """
    if len(name) <= names.MAX_NAME_LENGTH and _DNS_1035.match(name):
        return name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = "m-" + cleaned
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def server_name(md_name: str) -> str:
    """Name of the Triton Deployment, its Service and its HPA."""
    return names.fit(dns_base(md_name), "")


def build_job_name(md_name: str, revision: str) -> str:
    """Name of a revision's engine-build Job: ``<name>-build-<revision>``."""
    return names.fit(dns_base(md_name), f"-build-{revision}")


def smoke_job_name(md_name: str, revision: str) -> str:
    """Name of a revision's smoke-test Job: ``<name>-smoke-<revision>``."""
    return names.fit(dns_base(md_name), f"-smoke-{revision}")


def engines_configmap_name(md_name: str) -> str:
    """Name of the ConfigMap recording the built engines: ``<name>-engines``."""
    return names.fit(dns_base(md_name), "-engines")


def label_value(md_name: str) -> str:
    """The ModelDeployment's name as a label value (at most 63 characters)."""
    return md_name if len(md_name) <= names.MAX_NAME_LENGTH else server_name(md_name)


def selector(md_name: str) -> dict[str, str]:
    """The labels selecting a ModelDeployment's Triton pods (a Deployment's selector is immutable)."""
    return {MODELDEPLOYMENT_LABEL: label_value(md_name), well_known.COMPONENT: SERVER}


def child_labels(md_name: str, component: str, revision: str | None = None) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` labels plus ``kubetune.dev/modeldeployment`` (and the revision).

    Args:
        md_name: the ModelDeployment's name.
        component: one of :data:`BUILD`, :data:`SMOKE`, :data:`SERVER`, :data:`ENGINES`.
        revision: the revision the child belongs to, if any.

    Returns:
        The labels.
    """
    out = {
        well_known.NAME: well_known.APP,
        well_known.MANAGED_BY: well_known.APP,
        well_known.INSTANCE: label_value(md_name),
        well_known.COMPONENT: component,
        MODELDEPLOYMENT_LABEL: label_value(md_name),
    }
    if revision:
        out[REVISION_LABEL] = revision
    return out


def metadata(parent: Parent, name: str, component: str, revision: str | None = None) -> dict[str, Any]:
    """``metadata`` of a child: name, namespace, labels and the controller owner reference."""
    return {
        "name": name,
        "namespace": parent.namespace,
        "labels": child_labels(parent.name, component, revision),
        "ownerReferences": [names.owner_reference(parent.owner)],
    }


def _json_map(annotations: Mapping[str, str], key: str) -> dict[str, str]:
    """The string entries of a JSON-object annotation; {} when absent or malformed."""
    text = annotations.get(key)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def extra_pod_labels(parent: Parent, component: str) -> dict[str, str]:
    """Labels asked for by the ``kubetune.dev/<component>-pod-labels`` annotation (a JSON object).

    A testing and debugging aid, named like the FineTuneJob's: e.g.
    ``kubetune.dev/smoke-pod-labels: '{"kwok.x-k8s.io/fail": "true"}'`` makes only the smoke-test
    pods fail on the kwok test bed. Labels kubetune sets itself win over these. A malformed value
    is ignored (and logged by the handler).

    Args:
        parent: the ModelDeployment (its annotations).
        component: :data:`BUILD`, :data:`SMOKE` or :data:`SERVER`.

    Returns:
        The extra labels, {} when there are none.
    """
    return _json_map(parent.annotations, well_known.pod_labels_annotation(component))


def extra_pod_annotations(parent: Parent, component: str) -> dict[str, str]:
    """Annotations asked for by ``kubetune.dev/<component>-pod-annotations`` (e.g. kwok timings).

    Args:
        parent: the ModelDeployment (its annotations).
        component: :data:`BUILD`, :data:`SMOKE` or :data:`SERVER`.

    Returns:
        The extra pod annotations, {} when there are none.
    """
    return _json_map(parent.annotations, well_known.pod_annotations_annotation(component))


def malformed_pod_label_annotations(annotations: Mapping[str, str]) -> list[str]:
    """The pod-label and pod-annotation annotations that are not a JSON object of strings.

    Args:
        annotations: the ModelDeployment's metadata.annotations.

    Returns:
        The offending annotation keys.
    """
    bad = []
    keys = [
        f(c) for c in POD_COMPONENTS for f in (well_known.pod_labels_annotation, well_known.pod_annotations_annotation)
    ]
    for key in keys:
        if key not in annotations:
            continue
        try:
            value = json.loads(annotations[key])
        except ValueError:
            bad.append(key)
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            bad.append(key)
    return bad
