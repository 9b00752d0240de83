"""Condition types and reasons of a ModelDeployment: the vocabulary users read in ``kubectl describe mdep``.

Why this module exists: reasons are an API. Alerts, dashboards and Argo CD health checks match on
them, so each one is a constant defined once, with one sentence saying when it is set (the same
style as :mod:`kubetune.reconcile.reasons` for FineTuneJobs). Event reasons reuse them.
"""

from __future__ import annotations

from typing import Final

# Condition types (every one is always present in the status).

#: The model to serve is known: the FineTuneJob succeeded with an artifact, or spec.model.uri is set.
MODEL_READY: Final = "ModelReady"
#: The Triton model repository (and TensorRT-LLM engine) of the target revision exists.
ENGINE_BUILT: Final = "EngineBuilt"
#: The target revision is being built, rolled out or smoke-tested.
PROGRESSING: Final = "Progressing"
#: The Service has at least the minimum number of ready Triton pods (of any revision).
AVAILABLE: Final = "Available"
#: The target revision could not be served; an older revision (or nothing) serves instead.
DEGRADED: Final = "Degraded"
#: The target revision answered the smoke-test prompt.
SMOKE_TESTED: Final = "SmokeTested"
#: The target revision serves all replicas and passed its smoke test.
READY: Final = "Ready"

#: Every condition type, in the order they appear in the status.
CONDITION_TYPES: Final = (MODEL_READY, ENGINE_BUILT, PROGRESSING, AVAILABLE, DEGRADED, SMOKE_TESTED, READY)

# Reasons.

#: spec.model.uri names the checkpoint to serve; there is nothing to wait for.
MODEL_URI_GIVEN: Final = "ModelURIGiven"
#: The referenced FineTuneJob succeeded and its artifact is served.
FINE_TUNE_JOB_SUCCEEDED: Final = "FineTuneJobSucceeded"
#: The referenced FineTuneJob is gone; the artifact recorded for the current revision keeps being served.
FINE_TUNE_JOB_DELETED: Final = "FineTuneJobDeleted"
#: The referenced FineTuneJob does not exist yet (e.g. both were applied in one GitOps commit).
FINE_TUNE_JOB_NOT_FOUND: Final = "FineTuneJobNotFound"
#: The referenced FineTuneJob is still running.
FINE_TUNE_JOB_NOT_SUCCEEDED: Final = "FineTuneJobNotSucceeded"
#: The referenced FineTuneJob failed, so there is no model to serve.
FINE_TUNE_JOB_FAILED: Final = "FineTuneJobFailed"
#: The referenced FineTuneJob succeeded but reports no artifact URI and digest.
ARTIFACT_MISSING: Final = "ArtifactMissing"
#: Nothing can be built before the model is known.
WAITING_FOR_MODEL: Final = "WaitingForModel"
#: The model is not on a PersistentVolumeClaim (hf://, s3://) and spec.engineStorage is not set.
ENGINE_STORAGE_UNAVAILABLE: Final = "EngineStorageUnavailable"
#: The engine-build Job of the target revision was created.
BUILD_STARTED: Final = "BuildStarted"
#: The engine-build Job of the target revision is running.
BUILDING: Final = "Building"
#: The engine-build Job of the target revision completed.
BUILD_SUCCEEDED: Final = "BuildSucceeded"
#: An engine with the same revision was built before; it is reused without a build.
ENGINE_CACHED: Final = "EngineCached"
#: The engine-build Job of the target revision failed.
BUILD_FAILED: Final = "BuildFailed"
#: The Deployment is replacing pods with the target revision; old pods serve until new ones are ready.
ROLLING_OUT: Final = "RollingOut"
#: The smoke test runs once the target revision is rolled out.
SMOKE_TEST_PENDING: Final = "SmokeTestPending"
#: The smoke-test Job of the target revision is running.
SMOKE_TESTING: Final = "SmokeTesting"
#: The smoke-test Job of the target revision got a non-empty answer.
SMOKE_TEST_PASSED: Final = "SmokeTestPassed"
#: spec.rollout.smokeTest.enabled is false; a rolled-out revision counts as tested.
SMOKE_TEST_DISABLED: Final = "SmokeTestDisabled"
#: The smoke-test Job of the target revision failed; the revision was rolled back.
SMOKE_TEST_FAILED: Final = "SmokeTestFailed"
#: The target revision's pods were not ready within progressDeadlineSeconds; it was rolled back.
ROLLOUT_TIMED_OUT: Final = "RolloutTimedOut"
#: The target revision is rolled out and tested; nothing is in progress.
ROLLOUT_COMPLETE: Final = "RolloutComplete"
#: The Deployment serves previousRevision again because the target revision failed.
ROLLED_BACK: Final = "RolledBack"
#: The target revision failed and there is no earlier revision to roll back to.
NO_PREVIOUS_REVISION: Final = "NoPreviousRevision"
#: There is no Triton Deployment yet.
NOT_DEPLOYED: Final = "NotDeployed"
#: At least one Triton pod (all of them when replicas is 1) is ready behind the Service.
MINIMUM_REPLICAS_AVAILABLE: Final = "MinimumReplicasAvailable"
#: No Triton pod is ready behind the Service.
REPLICAS_UNAVAILABLE: Final = "ReplicasUnavailable"
#: spec.replicas is 0: the revision is deployed but no pod serves it.
SCALED_TO_ZERO: Final = "ScaledToZero"
#: Nothing is wrong.
AS_EXPECTED: Final = "AsExpected"
#: The target revision serves traffic.
SERVING: Final = "Serving"
