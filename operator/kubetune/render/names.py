"""Deterministic names, labels and owner references of a FineTuneJob's children.

Names are a pure function of the FineTuneJob's name (and the train attempt), never random: a
reconcile that crashed half-way and runs again creates the same objects, so the API server's
``AlreadyExists`` turns a repeated create into a no-op instead of a duplicate Job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kubetune.api import v1alpha1
from kubetune.api.v1alpha1 import labels

#: Kubernetes object names used as label values and pod hostnames must fit a DNS label.
MAX_NAME_LENGTH = 63

PREPARE = "prepare"
TRAIN = "train"
EVALUATE = "evaluate"
COMPONENTS = (PREPARE, TRAIN, EVALUATE)


def fit(base: str, suffix: str, limit: int = MAX_NAME_LENGTH) -> str:
    """Join ``base`` and ``suffix``, shortening ``base`` with a stable hash if it is too long.

    Args:
        base: the owner's name.
        suffix: what makes the child's name, e.g. ``-train-3``.
        limit: maximum length of the result.

    Returns:
        ``base + suffix`` when it fits, else a prefix of ``base``, 6 hex digits of its sha256
        and the suffix; the same input always gives the same name.
    """
    if len(base) + len(suffix) <= limit:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    keep = max(1, limit - len(suffix) - len(digest) - 1)
    return f"{base[:keep].rstrip('-')}-{digest}{suffix}"


def config_map(name: str) -> str:
    """ConfigMap holding the trainer config (and the DeepSpeed config)."""
    return fit(name, "-config")


def service_account(name: str) -> str:
    """ServiceAccount the pods run as; it may patch only this job's status."""
    return fit(name, "-trainer")


def role(name: str) -> str:
    """Role (and RoleBinding) granting the ServiceAccount access to this job's status."""
    return fit(name, "-trainer")


def prepare_job(name: str) -> str:
    """The data preparation Job."""
    return fit(name, "-prepare")


def evaluate_job(name: str) -> str:
    """The evaluate + export Job."""
    return fit(name, "-evaluate")


def train_job(name: str, attempt: int, nodes: int = 1) -> str:
    """The Job of one train attempt.

    Pods of an Indexed Job are named ``<job>-<index>`` as hostnames, which must fit a DNS
    label too, so multi-node names leave room for the largest index.

    Args:
        name: the FineTuneJob's name.
        attempt: 1 for the first attempt.
        nodes: pods of the Job.

    Returns:
        ``<name>-train-<attempt>``, shortened when needed.
    """
    room = len(str(nodes - 1)) + 1 if nodes > 1 else 0
    return fit(name, f"-train-{attempt}", MAX_NAME_LENGTH - room)


def train_service(name: str) -> str:
    """Headless Service giving multi-node train pods stable DNS names for the rendezvous."""
    return fit(name, "-train")


def child_labels(name: str, component: str | None = None) -> dict[str, str]:
    """Labels of every child of a FineTuneJob.

    Args:
        name: the FineTuneJob's name.
        component: ``prepare``, ``train`` or ``evaluate`` for Jobs and pods; None otherwise.

    Returns:
        The ``app.kubernetes.io/*`` labels and ``kubetune.dev/finetunejob``.
    """
    out = {
        labels.NAME: labels.APP,
        labels.MANAGED_BY: labels.APP,
        labels.INSTANCE: name,
        labels.FINETUNEJOB: name,
    }
    if component:
        out[labels.COMPONENT] = component
    return out


def owner_reference(owner: Owner) -> dict[str, Any]:
    """The controller owner reference that makes the FineTuneJob own a child.

    Deleting the FineTuneJob then deletes its children through the garbage collector.

    Args:
        owner: the FineTuneJob's identity.

    Returns:
        An ``ownerReferences`` entry.
    """
    return {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True)
class Owner:
    """Identity of the object that owns the rendered children."""

    name: str
    namespace: str
    uid: str
    kind: str = "FineTuneJob"


def metadata(owner: Owner, name: str, component: str | None = None) -> dict[str, Any]:
    """``metadata`` of a child: name, namespace, labels and the owner reference.

    Args:
        owner: the owning FineTuneJob.
        name: the child's name.
        component: see :func:`child_labels`.

    Returns:
        The metadata dict.
    """
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": child_labels(owner.name, component),
        "ownerReferences": [owner_reference(owner)],
    }
