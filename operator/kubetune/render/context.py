"""Everything the renderers need to know about one FineTuneJob, in one immutable value.

The handler builds a :class:`Context` from the object it read and the operator's settings;
every renderer is then a pure function of it (and of the attempt being rendered), which is
what lets the unit tests check manifests without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubetune.api import v1alpha1
from kubetune.api.v1alpha1 import labels
from kubetune.render import names


@dataclass(frozen=True)
class Context:
    """One FineTuneJob as the renderers see it.

    Attributes:
        owner: name, namespace and uid of the FineTuneJob.
        spec: the admitted spec.
        image: the trainer image (``spec.image`` or the operator's default).
        base_model_uri: where the base model comes from: ``spec.baseModel.uri`` or, with
            ``fineTuneJobRef``, the referenced job's artifact URI.
        image_pull_policy: the pods' image pull policy.
        prepare_cpu: CPU request of the prepare pod.
        prepare_memory: memory request and limit of the prepare pod.
        extra_pod_labels: per component, labels copied onto its pods (debugging aid, see
            :func:`kubetune.api.v1alpha1.labels.pod_labels_annotation`).
        extra_pod_annotations: per component, annotations copied onto its pods.
    """

    owner: names.Owner
    spec: v1alpha1.FineTuneJobSpec
    image: str
    base_model_uri: str
    image_pull_policy: str = "IfNotPresent"
    prepare_cpu: str = "2"
    prepare_memory: str = "8Gi"
    extra_pod_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    extra_pod_annotations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The FineTuneJob's name."""
        return self.owner.name

    @property
    def namespace(self) -> str:
        """The FineTuneJob's namespace."""
        return self.owner.namespace


class PodOverrideError(ValueError):
    """A pod label/annotation override annotation is not a JSON object of strings."""


def pod_overrides(annotations: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Read the ``kubetune.dev/<component>-pod-labels|annotations`` annotations of a FineTuneJob.

    Args:
        annotations: the FineTuneJob's ``metadata.annotations``.

    Returns:
        ``(labels, annotations)``, each mapping a component to the extra keys of its pods.

    Raises:
        PodOverrideError: an annotation is not a JSON object with string values.
    """
    extra_labels: dict[str, dict[str, str]] = {}
    extra_annotations: dict[str, dict[str, str]] = {}
    for component in names.COMPONENTS:
        for key, target in (
            (labels.pod_labels_annotation(component), extra_labels),
            (labels.pod_annotations_annotation(component), extra_annotations),
        ):
            if key in annotations:
                target[component] = _string_map(key, annotations[key])
    return extra_labels, extra_annotations


def _string_map(key: str, text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise PodOverrideError(f"annotation {key} is not valid JSON: {err}") from err
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PodOverrideError(f'annotation {key} must be a JSON object of strings, e.g. {{"key": "value"}}')
    return value
