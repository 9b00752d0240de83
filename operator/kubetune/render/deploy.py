"""The ModelDeployment a FineTuneJob creates from ``spec.deploy`` when it succeeds.

``spec.deploy`` is a ModelDeployment spec without ``model``; the model is this job
(``model.fineTuneJobRef``), so the ModelDeployment controller picks up the artifact the job
recorded. The object is server-side applied with the FineTuneJob as its owner: applying it
again after a crash, or after the user edited ``spec.deploy``, updates it in place.
"""

from __future__ import annotations

from typing import Any

from kubetune.api import v1alpha1
from kubetune.render import names
from kubetune.render.context import Context


def deployment_name(ctx: Context) -> str | None:
    """Name of the ModelDeployment to create: ``spec.deploy.name`` or the job's; None without deploy."""
    if ctx.spec.deploy is None:
        return None
    return ctx.spec.deploy.name or ctx.name


def model_deployment(ctx: Context) -> dict[str, Any] | None:
    """The ModelDeployment serving this job's artifact.

    Args:
        ctx: the job being rendered.

    Returns:
        The manifest (validated through ``v1alpha1.ModelDeploymentSpec``), or None when the
        spec has no ``deploy`` block.
    """
    deploy = ctx.spec.deploy
    name = deployment_name(ctx)
    if deploy is None or name is None:
        return None
    serving = deploy.model_dump(exclude={"name"}, by_alias=False)
    serving["model"] = {"fine_tune_job_ref": {"name": ctx.name}}
    spec = v1alpha1.ModelDeploymentSpec.model_validate(serving)
    return {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": names.metadata(ctx.owner, name),
        "spec": spec.to_k8s(),
    }
