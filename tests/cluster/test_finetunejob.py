"""The FineTuneJob controller against a real API server, with kwok playing the GPU nodes.

Each test runs ``kubetune operator`` as a subprocess watching its namespace; kwok completes
pods (or fails them, with a chosen exit code, when the pod carries its failure label, which
tests put there through the ``kubetune.dev/<component>-pod-labels`` annotation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.support.cluster import Cluster, KubectlError
from tests.support.wait import wait_for

if TYPE_CHECKING:
    from tests.cluster.conftest import FineTuneJobs, OperatorProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T, F = "True", "False"
SUCCEEDED_CONDITIONS = [
    ("DataPrepared", T, "DataPrepared"),
    ("Ready", T, "Succeeded"),
    ("Training", F, "TrainingCompleted"),
    ("Succeeded", T, "Succeeded"),
]
FAIL_TRAIN = {"train": {"kwok.x-k8s.io/fail": "true"}}
OOM_KILLED = {"train": {"kwok.x-k8s.io/exit-code": "137", "kwok.x-k8s.io/fail-reason": "OOMKilled"}}


def example(name: str, namespace: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLES / f"finetunejob-{name}.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    return manifest


def secrets(cluster: Cluster, namespace: str) -> None:
    """The Secrets the examples reference (values are never read: kwok runs no containers)."""
    for name, keys in (("hf-token", ["HF_TOKEN"]), ("s3-credentials", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])):
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": dict.fromkeys(keys, "not-a-real-secret"),
            }
        )


def container(pod_or_job: dict[str, Any]) -> dict[str, Any]:
    spec = pod_or_job["spec"]
    spec = spec.get("template", {}).get("spec", spec)
    return dict(spec["containers"][0])


def test_lora_example_succeeds_under_restricted_pod_security(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs, volumes: Any
) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    volumes("kubetune-data", "kubetune-artifacts")
    secrets(cluster, namespace)
    manifest = example("lora", namespace)
    manifest["metadata"]["annotations"] = {
        f"kubetune.dev/{c}-pod-annotations": json.dumps({"kwok.x-k8s.io/duration": "150ms"})
        for c in ("prepare", "train", "evaluate")
    }
    cluster.apply(manifest)
    # The example gates on perplexity; report metrics the way the trainer's evaluate step does.
    ftjs.patch_status("cs-lora", {"metrics": {"perplexity": 7.5, "bleu": 31.0, "rougeL": 0.42}})

    status = ftjs.wait_phase("cs-lora", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert ftjs.conditions("cs-lora") == SUCCEEDED_CONDITIONS
    assert status["artifact"]["uri"] == "pvc://kubetune-artifacts/cs-lora/model"
    assert status["attempts"] == 1 and status["observedGeneration"] == 1
    assert status["startTime"] <= status["completionTime"]

    (train_pod,) = ftjs.pods("cs-lora", "train")
    resources = container(train_pod)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "1" and resources["limits"]["nvidia.com/gpu"] == "1"
    assert train_pod["spec"]["nodeName"].startswith("gpu-")
    assert train_pod["spec"]["serviceAccountName"] == "cs-lora-trainer"
    (prepare_pod,) = ftjs.pods("cs-lora", "prepare")
    assert "nvidia.com/gpu" not in json.dumps(container(prepare_pod)["resources"])
    assert list(ftjs.job_states("cs-lora")) == ["cs-lora-prepare", "cs-lora-train-1", "cs-lora-evaluate"]
    events = ftjs.events("cs-lora")
    for reason in ("Preparing", "Training", "Evaluating", "Succeeded"):
        assert ("Normal", reason) in events

    owned = [*ftjs.jobs("cs-lora")]
    for kind in ("configmap", "serviceaccount", "role", "rolebinding"):
        owned += cluster.get(kind, namespace=namespace, label="kubetune.dev/finetunejob=cs-lora")["items"]
    assert len(owned) == 7
    uid = ftjs.get("cs-lora")["metadata"]["uid"]
    for obj in owned:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (uid, True, True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubetune"

    assert operator.metric("kubetune_finetunejobs", phase="Succeeded") == 1
    assert operator.metric("kubetune_reconcile_duration_seconds_count", kind="FineTuneJob") > 0
    assert operator.http("/healthz") == "ok"


def test_full_example_trains_on_8_gpus_of_one_node(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs, volumes: Any
) -> None:
    volumes("kubetune-data")
    secrets(cluster, namespace)
    manifest = example("full", namespace)
    manifest["metadata"]["annotations"] = {"kubetune.dev/train-pod-annotations": '{"kwok.x-k8s.io/duration": "150ms"}'}
    cluster.apply(manifest)
    ftjs.patch_status("cs-full", {"metrics": {"perplexity": 5.0, "rougeL": 0.5}})

    status = ftjs.wait_phase("cs-full", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status
    (train_pod,) = ftjs.pods("cs-full", "train")
    assert container(train_pod)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    command = container(train_pod)["command"]
    assert command[0] == "torchrun" and "--nproc_per_node=8" in command
    assert train_pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    config_map = cluster.get("configmap", "cs-full-config", namespace=namespace)
    assert json.loads(config_map["data"]["deepspeed.json"])["zero_optimization"]["stage"] == 3
    (evaluate_pod,) = ftjs.pods("cs-full", "evaluate")
    assert container(evaluate_pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_multinode_example_waits_for_kueue_then_trains_across_two_nodes(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs, volumes: Any
) -> None:
    volumes("kubetune-data")
    secrets(cluster, namespace)
    manifest = example("multinode", namespace)
    # Train pods keep kwok's default 1-3 s, so both ranks run at once (one per node).
    manifest["metadata"]["annotations"] = {
        f"kubetune.dev/{c}-pod-annotations": '{"kwok.x-k8s.io/duration": "150ms"}' for c in ("prepare", "evaluate")
    }
    cluster.apply(manifest)
    name = "cs-full-2n"

    def queued() -> tuple[bool, Any]:
        status = ftjs.status(name)
        return ("Ready", F, "Queued") in [
            (c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])
        ], status

    wait_for(queued, timeout=30, description="the prepare Job queued for Kueue")
    (prepare,) = ftjs.jobs(name)
    assert prepare["spec"]["suspend"] is True
    assert prepare["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-a100"
    assert ftjs.pods(name) == []

    def admit_everything() -> tuple[bool, Any]:
        # What Kueue does once the queue has quota: unsuspend the Job.
        for job in ftjs.jobs(name):
            if job["spec"].get("suspend"):
                cluster.kubectl("patch", "job", job["metadata"]["name"], "-n", namespace, "--type=merge",
                                "-p", '{"spec": {"suspend": false}}')  # fmt: skip
        status = ftjs.status(name)
        return status.get("phase") in ("Succeeded", "Failed"), status

    status = wait_for(admit_everything, timeout=90, interval=0.5, description="the multi-node job to finish")
    assert status["phase"] == "Succeeded", status
    train = next(j for j in ftjs.jobs(name) if j["metadata"]["name"] == f"{name}-train-1")
    assert train["spec"]["completionMode"] == "Indexed"
    assert train["spec"]["completions"] == train["spec"]["parallelism"] == 2
    pods = ftjs.pods(name, "train")
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} == {"gpu-a100-0", "gpu-a100-1"}  # 8 GPUs each: one per node
    assert {p["spec"]["hostname"] for p in pods} == {f"{name}-train-1-0", f"{name}-train-1-1"}
    assert all(p["spec"]["subdomain"] == f"{name}-train" for p in pods)
    service = cluster.get("service", f"{name}-train", namespace=namespace)
    assert service["spec"]["clusterIP"] == "None"
    assert f"--master_addr={name}-train-1-0.{name}-train" in container(pods[0])["command"]


def test_failed_train_pod_is_retried_from_the_checkpoint_then_fails_with_the_exit_code(
    operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create(
        "flaky",
        {"retries": {"maxRetries": 2, "backoffSeconds": 1}},
        pod_labels=FAIL_TRAIN,
        pod_annotations=OOM_KILLED,
    )
    checkpoint = "s3://out-bucket/flaky/checkpoints/checkpoint-50"
    wait_for(lambda: "flaky-train-1" in ftjs.job_states("flaky"), timeout=30, description="attempt 1")
    ftjs.patch_status("flaky", {"checkpoint": {"uri": checkpoint, "step": 50}})

    status = ftjs.wait_phase("flaky", "Failed", "Succeeded", timeout=60)
    assert status["phase"] == "Failed"
    assert ftjs.job_states("flaky") == {
        "flaky-prepare": "Complete",
        "flaky-train-1": "Failed",
        "flaky-train-2": "Failed",
        "flaky-train-3": "Failed",
    }
    jobs = {j["metadata"]["name"]: j for j in ftjs.jobs("flaky")}
    assert "--resume" not in container(jobs["flaky-train-1"])["command"]
    for retry in ("flaky-train-2", "flaky-train-3"):
        assert container(jobs[retry])["command"][-2:] == ["--resume", checkpoint]
    failed = ftjs.condition("flaky", "Failed")
    assert failed["reason"] == "TrainingFailed"
    assert "exited with code 137 (OOMKilled)" in failed["message"]
    assert "no retries left (retries.maxRetries=2)" in failed["message"]
    assert ftjs.conditions("flaky") == [
        ("DataPrepared", T, "DataPrepared"),
        ("Ready", F, "TrainingFailed"),
        ("Training", F, "TrainingFailed"),
        ("Failed", T, "TrainingFailed"),
    ]
    assert status["attempts"] == 3
    assert ("Warning", "AttemptFailed") in ftjs.events("flaky")
    # Attempts never overlap: each retry starts after the previous attempt's Job failed.
    for previous, following in (("flaky-train-1", "flaky-train-2"), ("flaky-train-2", "flaky-train-3")):
        failed_at = next(
            c["lastTransitionTime"] for c in jobs[previous]["status"]["conditions"] if c["type"] == "Failed"
        )
        assert jobs[following]["metadata"]["creationTimestamp"] >= failed_at


def test_retry_succeeds_once_the_cause_is_gone(operator: OperatorProcess, ftjs: FineTuneJobs) -> None:
    ftjs.create("recovers", {"retries": {"maxRetries": 3, "backoffSeconds": 2}}, pod_labels=FAIL_TRAIN)

    def first_failed() -> tuple[bool, Any]:
        states = ftjs.job_states("recovers")
        return states.get("recovers-train-1") == "Failed", states

    wait_for(first_failed, timeout=30, description="attempt 1 to fail")
    # The fix: remove what made the pods fail (read when the next attempt is rendered).
    ftjs.patch_spec("recovers", {"metadata": {"annotations": {"kubetune.dev/train-pod-labels": None}}})
    status = ftjs.wait_phase("recovers", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"
    assert status["attempts"] == 2
    assert ftjs.conditions("recovers") == SUCCEEDED_CONDITIONS


def test_suspend_deletes_pods_and_resume_continues_from_the_checkpoint(
    operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create("pausable", pod_annotations={"train": {"kwok.x-k8s.io/duration": "10m"}})

    def training() -> tuple[bool, Any]:
        return len(ftjs.pods("pausable", "train")) == 1, ftjs.job_states("pausable")

    wait_for(training, timeout=30, description="attempt 1 running")
    checkpoint = "s3://out-bucket/pausable/checkpoints/checkpoint-100"
    ftjs.patch_status("pausable", {"checkpoint": {"uri": checkpoint, "step": 100}})
    ftjs.patch_spec("pausable", {"spec": {"suspend": True}})

    def stopped() -> tuple[bool, Any]:
        states = ftjs.job_states("pausable")
        return "pausable-train-1" not in states and not ftjs.pods("pausable", "train"), states

    wait_for(stopped, timeout=30, description="the train Job and its pods deleted")
    ftjs.wait_phase("pausable", "Suspended")
    assert ftjs.condition("pausable", "Suspended")["status"] == T
    assert ftjs.condition("pausable", "Training")["reason"] == "Suspended"

    # Resume; let the new attempt finish quickly.
    ftjs.patch_spec(
        "pausable",
        {
            "metadata": {"annotations": {"kubetune.dev/train-pod-annotations": '{"kwok.x-k8s.io/duration": "150ms"}'}},
            "spec": {"suspend": False},
        },
    )
    status = ftjs.wait_phase("pausable", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"
    jobs = {j["metadata"]["name"]: j for j in ftjs.jobs("pausable")}
    assert "pausable-train-1" not in jobs
    assert container(jobs["pausable-train-2"])["command"][-2:] == ["--resume", checkpoint]
    assert ftjs.conditions("pausable") == [
        ("DataPrepared", T, "DataPrepared"),
        ("Ready", T, "Succeeded"),
        ("Training", F, "TrainingCompleted"),
        ("Suspended", F, "Resumed"),
        ("Succeeded", T, "Succeeded"),
    ]
    events = ftjs.events("pausable")
    assert ("Normal", "Suspended") in events and ("Normal", "Resumed") in events


def test_deleting_the_job_removes_its_children(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create("doomed", pod_annotations={"train": {"kwok.x-k8s.io/duration": "10m"}})
    wait_for(lambda: ftjs.pods("doomed", "train"), timeout=30, description="the train pod")
    assert "finalizers" not in ftjs.get("doomed")["metadata"]
    cluster.delete("finetunejob", "doomed", namespace=namespace)

    def gone() -> tuple[bool, Any]:
        left = {
            kind: [
                o["metadata"]["name"]
                for o in cluster.get(kind, namespace=namespace, label="kubetune.dev/finetunejob=doomed")["items"]
            ]
            for kind in ("jobs", "pods", "configmaps", "serviceaccounts", "roles", "rolebindings")
        }
        return not any(left.values()), left

    wait_for(gone, timeout=60, description="the garbage collector to delete every child")


def test_evaluation_gate_fails_the_job_and_deploys_nothing(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create(
        "gated",
        {
            "evaluation": {"thresholds": {"maxPerplexity": 10, "minBleu": 20}},
            "deploy": {"backend": "python", "resources": {"gpus": 0}},
        },
    )
    ftjs.patch_status("gated", {"metrics": {"perplexity": 25.0, "bleu": 30.0}})
    status = ftjs.wait_phase("gated", "Failed", "Succeeded")
    assert status["phase"] == "Failed"
    failed = ftjs.condition("gated", "Failed")
    assert failed["reason"] == "EvaluationGateFailed"
    assert "perplexity 25 is above spec.evaluation.thresholds.maxPerplexity 10" in failed["message"]
    assert ("Warning", "EvaluationGateFailed") in ftjs.events("gated")
    assert cluster.get("modeldeployments", namespace=namespace)["items"] == []
    assert "uri" not in status.get("artifact", {})


def test_deploy_creates_the_model_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create("shipped", {"deploy": {"name": "chat", "backend": "python", "resources": {"gpus": 0}, "replicas": 2}})
    ftjs.wait_phase("shipped", "Succeeded")
    deployment = cluster.get("modeldeployment", "chat", namespace=namespace)
    assert deployment["spec"]["model"] == {"fineTuneJobRef": {"name": "shipped"}}
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["backend"] == "python"
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["name"] == "shipped" and owner["kind"] == "FineTuneJob"
    assert ("Normal", "Deployed") in ftjs.events("shipped")
    # Editing spec.deploy after success updates the ModelDeployment.
    ftjs.patch_spec("shipped", {"spec": {"deploy": {"replicas": 3}}})
    wait_for(
        lambda: cluster.get("modeldeployment", "chat", namespace=namespace)["spec"]["replicas"] == 3,
        timeout=30,
        description="the ModelDeployment updated",
    )


def test_deadline_and_ttl(cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs) -> None:
    ftjs.create(
        "slow",
        {"activeDeadlineSeconds": 4},
        pod_annotations={"prepare": {"kwok.x-k8s.io/duration": "10m"}},
    )
    ftjs.create("short-lived", {"ttlSecondsAfterFinished": 8})
    # The short-lived job is looked at first: it succeeds within seconds and is gone 8 s later.
    ftjs.wait_phase("short-lived", "Succeeded", timeout=60)
    status = ftjs.wait_phase("slow", "Failed", timeout=30)
    assert ftjs.condition("slow", "Failed")["reason"] == "DeadlineExceeded"
    assert status["completionTime"]
    wait_for(lambda: "slow-prepare" not in ftjs.job_states("slow"), timeout=30, description="running Job deleted")

    def deleted() -> bool:
        try:
            ftjs.get("short-lived")
        except KubectlError as err:
            return err.not_found
        return False

    wait_for(deleted, timeout=30, description="the finished job deleted after its TTL")


def test_continual_learning_waits_for_the_base_job(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ftjs: FineTuneJobs
) -> None:
    ftjs.create("round-2", {"baseModel": {"fineTuneJobRef": {"name": "round-1"}}, "training": {"epochs": 1}})
    status = ftjs.wait_phase("round-2", "Pending")
    assert ftjs.condition("round-2", "Ready")["reason"] == "WaitingForBaseModel"
    ftjs.create("round-1")
    ftjs.wait_phase("round-1", "Succeeded")
    status = ftjs.wait_phase("round-2", "Succeeded", "Failed", timeout=60)
    assert status["phase"] == "Succeeded"
    config = json.loads(cluster.get("configmap", "round-2-config", namespace=namespace)["data"]["config.json"])
    assert config["paths"]["baseModel"] == "s3://out-bucket/round-1/model"


def test_invalid_pod_override_annotation_fails_the_job(operator: OperatorProcess, ftjs: FineTuneJobs) -> None:
    manifest = ftjs.manifest("typo")
    manifest["metadata"]["annotations"]["kubetune.dev/train-pod-labels"] = "{not json"
    ftjs.cluster.apply(manifest)
    ftjs.wait_phase("typo", "Failed")
    failed = ftjs.condition("typo", "Failed")
    assert failed["reason"] == "InvalidSpec" and "kubetune.dev/train-pod-labels" in failed["message"]
    assert ftjs.jobs("typo") == []


def test_spec_the_api_server_rejects_fails_the_job(operator: OperatorProcess, ftjs: FineTuneJobs) -> None:
    ftjs.create("bad-cpu", {"resources": {"cpu": "eight"}})
    ftjs.wait_phase("bad-cpu", "Failed")
    failed = ftjs.condition("bad-cpu", "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("the API server rejected Job bad-cpu-train-1: ")
    assert "quantities must match" in failed["message"]
    assert ("Warning", "InvalidSpec") in ftjs.events("bad-cpu")
