"""Views of a ModelDeployment's children, from the shapes the API server returns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune.reconcile import observed as job_observed
from kubetune.reconcile import serving_observed as seen

UID = "uid-md"


def a_job(name: str, component: str = "build", revision: str = "r1", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/component": component, "kubetune.dev/revision": revision},
            "ownerReferences": [{"uid": UID, "controller": True}],
        },
        "spec": {},
        "status": status,
    }


def condition(type_: str, **extra: str) -> dict[str, str]:
    return {"type": type_, "status": "True", "lastTransitionTime": "2026-03-01T12:00:00Z", **extra}


def test_job_states() -> None:
    assert seen.job_view(a_job("a")).state == job_observed.JobState.ACTIVE  # type: ignore[union-attr]
    done = seen.job_view(a_job("b", conditions=[condition("SuccessCriteriaMet"), condition("Complete")]))
    assert done is not None and done.state == job_observed.JobState.SUCCEEDED and done.message == ""
    assert (done.component, done.revision, done.name) == ("build", "r1", "b")


def test_failed_job_is_explained_by_its_pod() -> None:
    job = a_job("chat-smoke-r1", "smoke", conditions=[condition("Failed", reason="BackoffLimitExceeded")])
    pod = {
        "metadata": {"name": "chat-smoke-r1-x"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "smoke-test",
                    "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "no answer"}},
                }
            ],
        },
    }
    view = seen.job_view(job, [pod])
    assert view is not None and view.state == job_observed.JobState.FAILED
    assert "container smoke-test exited with code 1 (Error): no answer" in view.message
    bare = seen.job_view(job)
    assert bare is not None and "BackoffLimitExceeded" not in bare.message and "chat-smoke-r1" in bare.message


@pytest.mark.parametrize("labels", [{}, {"app.kubernetes.io/component": "train"}, {"kubetune.dev/revision": "r1"}])
def test_foreign_jobs_are_ignored(labels: dict[str, str]) -> None:
    job = a_job("x")
    job["metadata"]["labels"] = labels
    assert seen.job_view(job) is None


def test_job_views_keep_only_our_jobs() -> None:
    ours, theirs = a_job("ours"), a_job("theirs")
    theirs["metadata"]["ownerReferences"] = [{"uid": "another", "controller": True}]
    deleting = a_job("deleting")
    deleting["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    views = seen.job_views([ours, theirs, deleting], UID)
    assert [(v.name, v.deleting) for v in views] == [("ours", False), ("deleting", True)]


def a_deployment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat", "generation": 3},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": {"kubetune.dev/revision": "r2"}}}},
        "status": status,
    }


def test_deployment_rolled_out() -> None:
    view = seen.deployment_view(
        a_deployment(
            observedGeneration=3, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2,
            conditions=[{"type": "Available", "status": "True"},
                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
        )
    )  # fmt: skip
    assert (view.revision, view.desired, view.observed, view.rolled_out, view.deadline_exceeded) == (
        "r2", 2, True, True, False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "status",
    [
        {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},  # stale
        {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3},  # old pod left
        {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2},  # half updated
        {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},  # not available
    ],
)
def test_deployment_not_rolled_out(status: dict[str, Any]) -> None:
    assert not seen.deployment_view(a_deployment(**status)).rolled_out


def test_deployment_deadline_exceeded() -> None:
    view = seen.deployment_view(
        a_deployment(
            observedGeneration=3,
            conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                         "message": 'ReplicaSet "chat-1" has timed out progressing.'}],
        )
    )  # fmt: skip
    assert view.deadline_exceeded and "timed out" in view.progress_message
    assert not view.rolled_out


def test_empty_deployment_status() -> None:
    view = seen.deployment_view({"metadata": {"generation": 1}, "spec": {}})
    assert (view.revision, view.desired, view.observed_generation, view.rolled_out) == (None, 1, 0, False)


def test_finetunejob_view() -> None:
    view = seen.finetunejob_view(
        {
            "metadata": {"name": "job"},
            "spec": {"output": {"uri": "pvc://out/run", "secretRef": {"name": "creds"}}},
            "status": {"phase": "Succeeded", "artifact": {"uri": "pvc://out/run/model", "digest": "sha256:1"}},
        }
    )
    assert view == seen.FineTuneJobView("job", "Succeeded", "pvc://out/run/model", "sha256:1", "creds")
    assert seen.finetunejob_view({"metadata": {"name": "new"}, "spec": {}}) == seen.FineTuneJobView("new", None)


def a_record(revision: str = "r1") -> seen.EngineRecord:
    return seen.EngineRecord(
        revision=revision, uri=f"pvc://m/engines/{revision}", model_uri="pvc://m/model", model_digest="sha256:1",
        backend=v1alpha1.Backend.PYTHON, quantization=v1alpha1.Quantization.FP16, engine=v1alpha1.EngineSpec(),
        image="triton", build_image="trtllm", built_at=datetime(2026, 3, 1, tzinfo=UTC),
    )  # fmt: skip


def test_engine_records_round_trip_and_skip_corrupt_entries() -> None:
    record = a_record()
    text = record.to_json()
    assert json.loads(text)["modelUri"] == "pvc://m/model"
    newer = json.dumps({**json.loads(text), "someFutureField": 1})
    data = {"r1": newer, "r2": "{not json", "r3": a_record("r9").to_json(), "r4": json.dumps({"revision": "r4"})}
    assert seen.engine_records(data) == {"r1": record}
    assert seen.engine_records(None) == {}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, {}),
        ("", {}),
        ('{"repository": "/mnt/pvc/m/engines/r1", "digest": "sha256:9", "count": 3}\n',
         {"repository": "/mnt/pvc/m/engines/r1", "digest": "sha256:9"}),
        ('log line\n{"digest": "sha256:9"}\ntrailing noise', {"digest": "sha256:9"}),
        ("[1, 2]", {}),
    ],
)  # fmt: skip
def test_build_report(message: str | None, expected: dict[str, str]) -> None:
    assert seen.build_report(message) == expected
