"""The operator SIGKILLed at random points over many job lifecycles: no duplicates, no lost transitions.

24 FineTuneJobs arrive two at a time (16 succeed, 4 exhaust their retries, 4 miss the evaluation
gate) while the operator is killed with SIGKILL 0.1-1.5 s after each start and restarted. Afterwards every job
must be in its right terminal phase with the full condition list, and the set of Jobs must be
exactly what one uninterrupted run creates: one prepare, the right number of train attempts,
one evaluate, nothing more.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from tests.support.cluster import Cluster

if TYPE_CHECKING:
    from tests.cluster.conftest import FineTuneJobs, OperatorProcess

T, F = "True", "False"
SUCCEEDED = [
    ("DataPrepared", T, "DataPrepared"),
    ("Ready", T, "Succeeded"),
    ("Training", F, "TrainingCompleted"),
    ("Succeeded", T, "Succeeded"),
]
OUT_OF_RETRIES = [
    ("DataPrepared", T, "DataPrepared"),
    ("Ready", F, "TrainingFailed"),
    ("Training", F, "TrainingFailed"),
    ("Failed", T, "TrainingFailed"),
]
GATED = [
    ("DataPrepared", T, "DataPrepared"),
    ("Ready", F, "EvaluationGateFailed"),
    ("Training", F, "TrainingCompleted"),
    ("Failed", T, "EvaluationGateFailed"),
]


def _plan() -> dict[str, dict[str, Any]]:
    plan: dict[str, dict[str, Any]] = {}
    for i in range(16):
        plan[f"ok-{i}"] = {"spec": {}, "phase": "Succeeded", "attempts": 1, "conditions": SUCCEEDED}
    for i in range(4):
        plan[f"flaky-{i}"] = {
            "spec": {"retries": {"maxRetries": 1, "backoffSeconds": 1}},
            "pod_labels": {"train": {"kwok.x-k8s.io/fail": "true"}},
            "phase": "Failed",
            "attempts": 2,
            "conditions": OUT_OF_RETRIES,
        }
    for i in range(4):
        plan[f"gated-{i}"] = {
            "spec": {"evaluation": {"thresholds": {"maxPerplexity": 10}}},
            "metrics": {"perplexity": 50.0},
            "phase": "Failed",
            "attempts": 1,
            "conditions": GATED,
        }
    return plan


def test_sigkill_at_random_points_leaves_no_duplicates(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    rng = random.Random(20261124)
    plan = _plan()
    waiting = list(plan)
    rng.shuffle(waiting)

    def submit(name: str) -> None:
        entry = plan[name]
        # Half the jobs keep kwok's default 1-3 s pods, so lifecycles overlap many kills.
        fast = name.endswith(("0", "2"))
        ftjs.create(name, entry["spec"], pod_labels=entry.get("pod_labels"), fast=fast)
        if "metrics" in entry:
            ftjs.patch_status(name, {"metrics": entry["metrics"]})

    # Jobs arrive two at a time between kills, so kills land in every phase of some lifecycle.
    kills = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for _ in range(2):
            if waiting:
                submit(waiting.pop())
        time.sleep(rng.uniform(0.1, 1.5))
        phases = [
            (j.get("status") or {}).get("phase") for j in cluster.get("finetunejobs", namespace=namespace)["items"]
        ]
        if not waiting and all(p in ("Succeeded", "Failed") for p in phases):
            break
        operator.restart()  # SIGKILL, then start again
        kills += 1
    assert kills >= 15, f"only {kills} kills happened before the jobs finished; the test proved little"

    # The last run finishes whatever is left; then give it time to (wrongly) do anything more.
    for name in plan:
        ftjs.wait_phase(name, "Succeeded", "Failed", timeout=120)
    time.sleep(3)

    problems = []
    expected_jobs: set[str] = set()
    for name, entry in plan.items():
        status = ftjs.status(name)
        wanted_jobs = (
            {f"{name}-prepare", f"{name}-evaluate"}
            if entry["conditions"] is not OUT_OF_RETRIES
            else {f"{name}-prepare"}
        )
        wanted_jobs |= {f"{name}-train-{attempt}" for attempt in range(1, entry["attempts"] + 1)}
        expected_jobs |= wanted_jobs
        got = {
            "phase": status.get("phase"),
            "attempts": status.get("attempts"),
            "conditions": ftjs.conditions(name),
            "jobs": set(ftjs.job_states(name)),
        }
        want = {
            "phase": entry["phase"],
            "attempts": entry["attempts"],
            "conditions": entry["conditions"],
            "jobs": wanted_jobs,
        }
        if got != want:
            problems.append((name, got, want))
    assert problems == []

    all_jobs = {j["metadata"]["name"] for j in cluster.get("jobs", namespace=namespace)["items"]}
    assert all_jobs == expected_jobs
    pods_per_job: dict[str, int] = {}
    for pod in cluster.get("pods", namespace=namespace)["items"]:
        job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        pods_per_job[job_name] = pods_per_job.get(job_name, 0) + 1
    assert set(pods_per_job.values()) == {1}, pods_per_job
    print(f"{kills} SIGKILLs over {len(plan)} lifecycles")
