"""Condition types and reasons of a FineTuneJob: the vocabulary of ``kubectl describe ftj``.

Types are adjectives or past participles (``Ready``, ``DataPrepared``, ``Succeeded``), as in
Kubernetes and Kueue; reasons are CamelCase constants, each documented in one sentence so
that docs/operations.md and alerting rules can rely on them. Event reasons reuse them.
"""

from __future__ import annotations

from typing import Final

# Condition types.

#: The job produced its artifact; False with the current phase's reason until then.
READY: Final = "Ready"
#: The prepare step cleaned, split and tokenized the dataset.
DATA_PREPARED: Final = "DataPrepared"
#: A train attempt is running, queued or waiting to be retried.
TRAINING: Final = "Training"
#: The job finished successfully (only present once it has).
SUCCEEDED: Final = "Succeeded"
#: The job failed for good (only present once it has).
FAILED: Final = "Failed"
#: The job is suspended (``spec.suspend``); False with reason Resumed after it resumes.
SUSPENDED: Final = "Suspended"

CONDITION_TYPES: Final = (READY, DATA_PREPARED, TRAINING, SUCCEEDED, FAILED, SUSPENDED)

# Reasons.

#: The job was accepted and nothing has started yet.
CREATED: Final = "Created"
#: ``baseModel.fineTuneJobRef`` names a FineTuneJob that has not succeeded yet.
WAITING_FOR_BASE_MODEL: Final = "WaitingForBaseModel"
#: ``baseModel.fineTuneJobRef`` names a FineTuneJob that failed, so there is nothing to start from.
BASE_MODEL_FAILED: Final = "BaseModelFailed"
#: The prepare Job is cleaning, redacting, deduplicating, balancing and tokenizing the dataset.
PREPARING: Final = "Preparing"
#: The prepare Job succeeded; the message summarises the data report.
DATA_READY: Final = "DataPrepared"
#: The prepare Job failed; the message says why (exit code, OOMKilled, deadline).
PREPARE_FAILED: Final = "PrepareFailed"
#: A Job waits for Kueue to admit it (created suspended because ``spec.queueName`` is set).
QUEUED: Final = "Queued"
#: A train attempt is running; the message names the attempt and the checkpoint it resumed from.
TRAINING_RUNNING: Final = "Training"
#: A train attempt failed and another one starts after the back-off, from the latest checkpoint.
ATTEMPT_FAILED: Final = "AttemptFailed"
#: Training finished; evaluation and export come next.
TRAINING_COMPLETED: Final = "TrainingCompleted"
#: The last allowed train attempt failed (``retries.maxRetries`` exhausted) or failed for a reason a retry cannot fix.
TRAINING_FAILED: Final = "TrainingFailed"
#: The evaluate Job is scoring the model and exporting the artifact.
EVALUATING: Final = "Evaluating"
#: The evaluate Job failed; the message says why.
EVALUATION_FAILED: Final = "EvaluationFailed"
#: The model missed ``spec.evaluation.thresholds`` (or reported no metrics), so it is not deployed.
EVALUATION_GATE_FAILED: Final = "EvaluationGateFailed"
#: The artifact is exported (and the ModelDeployment requested when ``spec.deploy`` is set).
JOB_SUCCEEDED: Final = "Succeeded"
#: ``spec.activeDeadlineSeconds`` passed before the job finished.
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
#: ``spec.suspend`` is true: running pods were deleted and nothing runs until it is cleared.
JOB_SUSPENDED: Final = "Suspended"
#: ``spec.suspend`` was cleared; training resumes from the latest checkpoint in a new attempt.
RESUMED: Final = "Resumed"
#: The spec could not be read by this operator version (the message names the field).
INVALID_SPEC: Final = "InvalidSpec"

# Event-only reasons.

#: A child Job was created (event).
JOB_CREATED: Final = "JobCreated"
#: The ModelDeployment from ``spec.deploy`` was created or updated (event).
DEPLOYED: Final = "Deployed"
#: The finished job was deleted after ``spec.ttlSecondsAfterFinished`` (event).
TTL_EXPIRED: Final = "TTLExpired"
#: A child with the expected name exists but belongs to someone else (event).
CHILD_CONFLICT: Final = "ChildConflict"
#: Reconciling failed with an API error; it is retried with back-off (event).
RECONCILE_ERROR: Final = "ReconcileError"
