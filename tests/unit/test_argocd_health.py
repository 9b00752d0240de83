"""The Argo CD health checks (Lua) give the expected health for every phase of both kinds.

The scripts run in Lua 5.1 (Argo CD uses gopher-lua, a 5.1 implementation) with the libraries
Argo CD does not offer removed. Every status sample is validated by the API's own status models
first, so a sample can't drift from what the operator writes, and every phase of both enums
must have a sample: a new phase without a health mapping fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.api import v1alpha1
from lupa import lua51

REPO = Path(__file__).resolve().parents[2]
ARGOCD_DIR = REPO / "charts" / "kubetune" / "argocd"
CM_PATCH = REPO / "examples" / "gitops" / "argocd-cm-patch.yaml"
HEALTH_FILES = {
    "FineTuneJob": ARGOCD_DIR / "kubetune.dev_FineTuneJob" / "health.lua",
    "ModelDeployment": ARGOCD_DIR / "kubetune.dev_ModelDeployment" / "health.lua",
}
T0, T1, T2 = "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"


class LuaError(RuntimeError):
    """The health script raised a Lua error."""


def _condition(type_: str, status: str, reason: str, message: str, when: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": when}


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run one kind's health.lua on ``obj`` the way Argo CD does; return ``{"status", "message"}``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    env = lua.globals()
    for name in ("os", "io", "debug", "package", "require", "dofile", "loadfile", "load", "loadstring"):
        env[name] = None  # Argo CD's sandbox offers base, string, table and math only
    env.obj = lua.table_from(obj, recursive=True)
    try:
        result = lua.execute(HEALTH_FILES[kind].read_text(encoding="utf-8"))
    except lua51.LuaError as err:
        raise LuaError(str(err)) from err
    return {"status": result["status"], "message": result["message"]}


def job(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "FineTuneJob",
        "metadata": {"name": "cs-lora", "namespace": "ml", "generation": generation},
        "spec": {"method": "lora"},
    }
    if status is not None:
        v1alpha1.FineTuneJobStatus.model_validate(status)
        obj["status"] = status
    return obj


def deployment(status: dict[str, Any] | None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "cs-lora", "namespace": "ml", "generation": generation},
        "spec": {"replicas": 2, **spec},
    }
    if status is not None:
        v1alpha1.ModelDeploymentStatus.model_validate(status)
        obj["status"] = status
    return obj


JOB_SAMPLES: dict[str, tuple[dict[str, Any], str, str]] = {
    # phase: (status, expected health, expected message)
    "Pending": (
        {
            "phase": "Pending",
            "observedGeneration": 1,
            "conditions": [_condition("Admitted", "False", "WaitingForQuota", "LocalQueue gpu is full", T0)],
        },
        "Progressing",
        "Pending: WaitingForQuota: LocalQueue gpu is full",
    ),
    "Preparing": (
        {
            "phase": "Preparing",
            "observedGeneration": 1,
            "conditions": [
                _condition("Admitted", "True", "Admitted", "admitted", T0),
                _condition("DataReady", "False", "Preparing", "cleaning 120000 records", T1),
            ],
        },
        "Progressing",
        "Preparing: Preparing: cleaning 120000 records",
    ),
    "Training": (
        {
            "phase": "Training",
            "observedGeneration": 1,
            "progress": {"step": 120, "totalSteps": 1000, "summary": "120/1000 (12%)", "loss": 1.2345, "eta": "1h02m"},
        },
        "Progressing",
        "Training: step 120/1000 (12%), loss 1.234, ETA 1h02m",
    ),
    "Evaluating": (
        {
            "phase": "Evaluating",
            "observedGeneration": 1,
            "conditions": [_condition("Trained", "True", "TrainingSucceeded", "1000 steps", T1)],
        },
        "Progressing",
        "Evaluating: TrainingSucceeded: 1000 steps",
    ),
    "Succeeded": (
        {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "artifact": {"uri": "pvc://artifacts/cs-lora/model", "digest": "sha256:ab"},
            "completionTime": T2,
        },
        "Healthy",
        "Succeeded: artifact pvc://artifacts/cs-lora/model",
    ),
    "Failed": (
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "attempts": 4,
            "conditions": [
                _condition("Trained", "False", "TrainingFailed", "attempt 4 of 4 exited with 137 (OOMKilled)", T2),
                _condition("DataReady", "True", "Prepared", "98000 records kept", T0),
            ],
        },
        "Degraded",
        "Failed: TrainingFailed: attempt 4 of 4 exited with 137 (OOMKilled)",
    ),
    "Suspended": (
        {
            "phase": "Suspended",
            "observedGeneration": 2,
            "conditions": [_condition("Suspended", "True", "SuspendedByUser", "spec.suspend is true", T1)],
        },
        "Suspended",
        "Suspended: SuspendedByUser: spec.suspend is true",
    ),
}

DEPLOYMENT_SAMPLES: dict[str, tuple[dict[str, Any], str, str]] = {
    "Pending": ({"phase": "Pending", "observedGeneration": 1}, "Progressing", "Pending"),
    "WaitingForModel": (
        {
            "phase": "WaitingForModel",
            "observedGeneration": 1,
            "conditions": [_condition("ModelReady", "False", "JobNotSucceeded", "FineTuneJob cs-lora is Training", T0)],
        },
        "Progressing",
        "WaitingForModel: JobNotSucceeded: FineTuneJob cs-lora is Training",
    ),
    "Building": (
        {
            "phase": "Building",
            "observedGeneration": 1,
            "conditions": [_condition("EngineBuilt", "False", "Building", "trtllm-build w4a16", T1)],
        },
        "Progressing",
        "Building: Building: trtllm-build w4a16",
    ),
    "Deploying": (
        {"phase": "Deploying", "observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "ready": "1/2"},
        "Progressing",
        "Deploying",
    ),
    "Ready": (
        {
            "phase": "Ready",
            "observedGeneration": 1,
            "ready": "2/2",
            "endpoint": {"http": "http://cs-lora.ml.svc:8000", "grpc": "cs-lora.ml.svc:8001"},
        },
        "Healthy",
        "Ready: 2/2 replicas ready, serving at http://cs-lora.ml.svc:8000",
    ),
    "Degraded": (
        {
            "phase": "Degraded",
            "observedGeneration": 1,
            "conditions": [_condition("Available", "False", "RolledBack", "smoke test failed; serving abc123", T2)],
        },
        "Degraded",
        "Degraded: RolledBack: smoke test failed; serving abc123",
    ),
    "Failed": (
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [_condition("EngineBuilt", "False", "BuildFailed", "build Job failed", T2)],
        },
        "Degraded",
        "Failed: BuildFailed: build Job failed",
    ),
}


def test_every_phase_has_a_sample() -> None:
    assert set(JOB_SAMPLES) == {p.value for p in v1alpha1.Phase}
    assert set(DEPLOYMENT_SAMPLES) == {p.value for p in v1alpha1.DeploymentPhase}


@pytest.mark.parametrize("phase", sorted(JOB_SAMPLES))
def test_finetunejob_phase(phase: str) -> None:
    status, health, message = JOB_SAMPLES[phase]
    generation = status["observedGeneration"]
    assert run_health("FineTuneJob", job(status, generation)) == {"status": health, "message": message}


@pytest.mark.parametrize("phase", sorted(DEPLOYMENT_SAMPLES))
def test_modeldeployment_phase(phase: str) -> None:
    status, health, message = DEPLOYMENT_SAMPLES[phase]
    assert run_health("ModelDeployment", deployment(status)) == {"status": health, "message": message}


@pytest.mark.parametrize("kind", sorted(HEALTH_FILES))
def test_no_status_yet_is_progressing(kind: str) -> None:
    obj = job(None) if kind == "FineTuneJob" else deployment(None)
    assert run_health(kind, obj)["status"] == "Progressing"
    obj["status"] = {"conditions": []}  # a status without a phase (e.g. only conditions so far)
    assert run_health(kind, obj)["status"] == "Progressing"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("FineTuneJob", JOB_SAMPLES["Succeeded"][0]), ("ModelDeployment", DEPLOYMENT_SAMPLES["Ready"][0])],
)
def test_stale_status_is_progressing(kind: str, status: dict[str, Any]) -> None:
    build = job if kind == "FineTuneJob" else deployment
    result = run_health(kind, build(copy.deepcopy(status), 3))
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the operator to act on generation 3 (status is for 1)",
    }


@pytest.mark.parametrize("kind", sorted(HEALTH_FILES))
def test_status_without_observed_generation_is_taken_at_face_value(kind: str) -> None:
    if kind == "FineTuneJob":
        status = {k: v for k, v in JOB_SAMPLES["Failed"][0].items() if k != "observedGeneration"}
        assert run_health(kind, job(status, 5))["status"] == "Degraded"
    else:
        status = {k: v for k, v in DEPLOYMENT_SAMPLES["Ready"][0].items() if k != "observedGeneration"}
        assert run_health(kind, deployment(status, 5))["status"] == "Healthy"


@pytest.mark.parametrize("kind", sorted(HEALTH_FILES))
def test_unknown_phase(kind: str) -> None:
    obj = job(None) if kind == "FineTuneJob" else deployment(None)
    obj["status"] = {"phase": "Exploded", "observedGeneration": 1}  # bypasses the model: not a valid phase
    assert run_health(kind, obj) == {"status": "Unknown", "message": "Unknown phase Exploded"}


def test_deployment_scaled_to_zero_is_suspended() -> None:
    status = DEPLOYMENT_SAMPLES["Ready"][0]
    assert run_health("ModelDeployment", deployment(status, replicas=0)) == {
        "status": "Suspended",
        "message": "Scaled to zero replicas",
    }
    autoscaled = deployment(status, replicas=0, autoscaling={"minReplicas": 1, "maxReplicas": 3})
    assert run_health("ModelDeployment", autoscaled)["status"] == "Healthy"


def test_latest_condition_wins_and_reasonless_messages_are_kept() -> None:
    obj = job(None)
    obj["status"] = {  # bypasses the model: the API requires a reason, the script copes without one
        "phase": "Failed",
        "observedGeneration": 1,
        "conditions": [
            _condition("A", "False", "Old", "older", T0),
            {"type": "B", "status": "False", "reason": "", "message": "newest, no reason", "lastTransitionTime": T2},
            _condition("C", "True", "Middle", "middle", T1),
            _condition("D", "True", "Empty", "", "2026-02-01T00:00:00Z"),  # no message: skipped
        ],
    }
    assert run_health("FineTuneJob", obj)["message"] == "Failed: newest, no reason"


def test_training_without_progress_falls_back_to_conditions() -> None:
    status = {
        "phase": "Training",
        "observedGeneration": 1,
        "conditions": [_condition("Trained", "Unknown", "PodsStarting", "waiting for 2 pods", T0)],
    }
    assert run_health("FineTuneJob", job(status))["message"] == "Training: PodsStarting: waiting for 2 pods"


def test_a_broken_script_would_surface_as_an_error() -> None:
    obj = job(None)
    obj["metadata"]["generation"] = "one"  # compared with a number: Lua raises, as Argo CD would report
    obj["status"] = {"phase": "Training", "observedGeneration": 1}
    with pytest.raises(LuaError, match="compare"):
        run_health("FineTuneJob", obj)


def test_argocd_cm_patch_embeds_the_scripts_verbatim() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text(encoding="utf-8"))
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    for kind, path in HEALTH_FILES.items():
        key = f"resource.customizations.health.kubetune.dev_{kind}"
        assert patch["data"][key] == path.read_text(encoding="utf-8"), f"{key} differs from {path}"
