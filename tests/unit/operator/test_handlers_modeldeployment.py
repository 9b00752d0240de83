"""The pure helpers of the ModelDeployment handler module (the I/O is covered by tests/cluster)."""

from __future__ import annotations

from kubetune import settings as settings_mod
from kubetune.api import v1alpha1
from kubetune.handlers import modeldeployment as handler
from kubetune.reconcile import modeldeployment as rollout


def test_default_images_come_from_the_settings() -> None:
    images = handler.default_images(settings_mod.Settings(trainer_image="trainer:9"))
    assert images == rollout.Images(
        settings_mod.DEFAULT_TRITON_IMAGE, settings_mod.DEFAULT_ENGINE_BUILD_IMAGE, "trainer:9"
    )
    env = {"KUBETUNE_TRITON_IMAGE": "triton:1", "KUBETUNE_ENGINE_BUILD_IMAGE": "trtllm:2"}
    images = handler.default_images(settings_mod.from_env(env))
    assert (images.server, images.build) == ("triton:1", "trtllm:2")


def test_invalid_status_fields_are_dropped_not_fatal() -> None:
    status = handler._lenient_status({"phase": "Sideways", "revision": "r1", "replicas": "many"})
    assert (status.phase, status.revision, status.replicas) == (None, "r1", None)
    assert handler._lenient_status(None) == v1alpha1.ModelDeploymentStatus()
    assert handler._lenient_status({"phase": "Ready"}).phase == "Ready"


def test_owner_name_is_the_controlling_modeldeployment() -> None:
    refs = [
        {"kind": "FineTuneJob", "name": "job", "controller": True},
        {"kind": "ModelDeployment", "name": "other", "controller": False},
        {"kind": "ModelDeployment", "name": "chat", "controller": True},
    ]
    assert handler._owner_name({"ownerReferences": refs}) == "chat"
    assert handler._owner_name({"ownerReferences": refs[:2]}) is None
    assert handler._owner_name({}) is None


def test_plans_become_render_revisions() -> None:
    spec = v1alpha1.ModelDeploymentSpec.model_validate({"model": {"uri": "pvc://m/model"}})
    plan = rollout.Plan("r1", spec, "pvc://m/model", "pvc://m/engines/r1", None, rollout.Images("t", "b", "k"))
    rev = handler.to_revision(plan, settings_mod.Settings(image_pull_policy="Always"))
    assert (rev.revision, rev.server_image, rev.build_image, rev.trainer_image, rev.image_pull_policy) == (
        "r1", "t", "b", "k", "Always",
    )  # fmt: skip
    assert rev.repository == "/mnt/pvc/m/engines/r1"
