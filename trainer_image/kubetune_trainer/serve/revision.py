"""The revision of a ModelDeployment: a content hash of everything that changes what is served.

Why this module exists: the operator names build Jobs, engine cache entries and rollouts by
revision, so two specs that serve the same bytes must share a revision (no rebuild, no rollout)
and any change to the model, backend, quantization, engine limits or images must produce a new
one. Scale settings (replicas, autoscaling, resources, service) are deliberately left out: they
change how many pods serve a revision, not what a revision is. Pure and torch-free: the operator
imports it.
"""

from __future__ import annotations

import hashlib
import json

from kubetune.api import v1alpha1

#: Hex characters kept: 48 bits, collision-free in practice for one deployment's history.
REVISION_LENGTH = 12


def revision_inputs(
    model_digest: str, spec: v1alpha1.ServingSpec, image: str, build_image: str | None = None
) -> dict[str, object]:
    """What the revision hashes, as a JSON-ready dict (shown by ``kubectl describe`` helpers and tests).

    Args:
        model_digest: digest of the model artifact (e.g. the FineTuneJob's ``status.artifact.digest``).
        spec: the serving settings.
        image: the Triton image that serves the revision (resolved, not ``None``).
        build_image: the engine-build image (tensorrtllm only: the engine is tied to its TensorRT-LLM).

    Returns:
        The inputs, with the engine settings as in the CRD (camelCase).
    """
    inputs: dict[str, object] = {
        "model": model_digest,
        "backend": spec.backend.value,
        "quantization": spec.quantization.value,
        "engine": spec.engine.to_k8s(),
        "image": image,
    }
    if build_image is not None and spec.backend is v1alpha1.Backend.TENSORRTLLM:
        inputs["buildImage"] = build_image
    return inputs


def revision(model_digest: str, spec: v1alpha1.ServingSpec, image: str, build_image: str | None = None) -> str:
    """Short hex content hash of model digest, backend, quantization, engine settings and image(s).

    Args:
        model_digest: digest of the model artifact.
        spec: the serving settings.
        image: the Triton image.
        build_image: the engine-build image (counted for the tensorrtllm backend only).

    Returns:
        :data:`REVISION_LENGTH` lowercase hex characters (valid in Kubernetes names and labels).

    Raises:
        ValueError: an empty model digest or image (a revision of "unknown" would be shared by mistake).
    """
    if not model_digest:
        raise ValueError("model_digest must not be empty")
    if not image:
        raise ValueError("image must not be empty")
    canonical = json.dumps(
        revision_inputs(model_digest, spec, image, build_image), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:REVISION_LENGTH]
