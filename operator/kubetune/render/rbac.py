"""The per-job identity of the trainer pods: a ServiceAccount that may touch one status only.

The trainer reports progress, the data report, metrics and checkpoints into its own
FineTuneJob's status. Its Role grants ``get``/``patch`` on ``finetunejobs/status`` and ``get``
on ``finetunejobs``, both restricted by ``resourceNames`` to that one job, so a compromised or
buggy pod cannot read or change any other job, nor any spec.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import v1alpha1
from kubetune.render import names
from kubetune.render.context import Context


def service_account(ctx: Context) -> dict[str, Any]:
    """The ServiceAccount ``<name>-trainer`` the job's pods run as."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": names.metadata(ctx.owner, names.service_account(ctx.name)),
    }


def role(ctx: Context) -> dict[str, Any]:
    """The Role letting the trainer read its FineTuneJob and patch that job's status only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": names.metadata(ctx.owner, names.role(ctx.name)),
        "rules": [
            {
                "apiGroups": [v1alpha1.GROUP],
                "resources": ["finetunejobs/status"],
                "resourceNames": [ctx.name],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": [v1alpha1.GROUP],
                "resources": ["finetunejobs"],
                "resourceNames": [ctx.name],
                "verbs": ["get"],
            },
        ],
    }


def role_binding(ctx: Context) -> dict[str, Any]:
    """Binds the Role to the job's ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": names.metadata(ctx.owner, names.role(ctx.name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role(ctx.name)},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account(ctx.name), "namespace": ctx.namespace}],
    }
