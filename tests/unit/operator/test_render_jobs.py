"""Rendering of the prepare/train/evaluate Jobs and the train Service, per method and topology."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubetune.api.v1alpha1 import labels
from kubetune.render import config, context, jobs, names, pods

CtxOf = Callable[..., context.Context]


def _pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod_spec(job)["containers"]
    return container


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(job)["env"]}


def _all_jobs(ctx: context.Context) -> Iterator[dict[str, Any]]:
    yield jobs.prepare_job(ctx)
    yield jobs.train_job(ctx, 1)
    yield jobs.train_job(ctx, 3, "auto")
    yield jobs.evaluate_job(ctx)


def test_lora_trains_in_one_pod_with_one_gpu(ctx_of: CtxOf) -> None:
    ctx = ctx_of("lora")
    job = jobs.train_job(ctx, 1)
    assert job["metadata"]["name"] == "cs-lora-train-1"
    assert "completionMode" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 0
    resources = _container(job)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert _container(job)["command"] == [
        "python", "-m", "kubetune_trainer", "train", "--config", "/etc/kubetune/config.json",
    ]  # fmt: skip
    assert _env(job)["KUBETUNE_ATTEMPT"]["value"] == "1"


def test_full_finetune_runs_torchrun_with_8_processes_on_one_node(ctx_of: CtxOf) -> None:
    ctx = ctx_of("full")
    job = jobs.train_job(ctx, 1)
    assert "completionMode" not in job["spec"]
    assert job["spec"].get("completions", 1) == 1
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == 8
    command = _container(job)["command"]
    assert command[0] == "torchrun"
    assert "--nproc_per_node=8" in command
    assert "--nnodes=1" in command
    assert command[command.index("-m") + 1 :] == [
        "kubetune_trainer", "train", "--config", config.CONFIG_PATH,
    ]  # fmt: skip
    assert _env(job)["KUBETUNE_DEEPSPEED_CONFIG"]["value"] == config.DEEPSPEED_PATH
    shm = next(v for v in _pod_spec(job)["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(job)["volumeMounts"]


def test_multi_node_is_an_indexed_job_with_rendezvous_on_pod_0(ctx_of: CtxOf) -> None:
    ctx = ctx_of("multinode")
    job = jobs.train_job(ctx, 2, "auto")
    service = jobs.train_service(ctx)
    name = job["metadata"]["name"]
    assert name == "cs-full-2n-train-2"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod_spec = _pod_spec(job)
    assert pod_spec["subdomain"] == service["metadata"]["name"] == "cs-full-2n-train"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    command = _container(job)["command"]
    # Pods of an Indexed Job have hostname <job>-<index>; pod 0 hosts the rendezvous.
    assert f"--master_addr={name}-0.{service['metadata']['name']}" in command
    assert f"--master_port={jobs.RENDEZVOUS_PORT}" in command
    assert "--nnodes=2" in command and "--nproc_per_node=8" in command
    assert "--node_rank=$(NODE_RANK)" in command
    rank = _env(job)["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert command[-2:] == ["--resume", "auto"]
    assert service["spec"]["ports"][0]["port"] == jobs.RENDEZVOUS_PORT


def test_lora_on_several_gpus_uses_torchrun_too(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    job = jobs.train_job(ctx_of(spec_of({"resources": {"gpusPerNode": 4}})), 1)
    assert _container(job)["command"][:4] == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=4"]


def test_cpu_training_requests_no_gpu(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    job = jobs.train_job(ctx_of(spec_of({"resources": {"gpusPerNode": 0}})), 1)
    resources = _container(job)["resources"]
    assert not any("gpu" in key for key in [*resources["requests"], *resources["limits"]])


def test_custom_gpu_resource_name(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    spec = spec_of({"resources": {"gpusPerNode": 2, "gpuResourceName": "amd.com/gpu"}})
    assert _container(jobs.train_job(ctx_of(spec), 1))["resources"]["limits"]["amd.com/gpu"] == 2


def test_retry_passes_the_checkpoint_to_the_trainer(ctx_of: CtxOf) -> None:
    job = jobs.train_job(ctx_of("lora"), 3, "/mnt/pvc/kubetune-artifacts/cs-lora/checkpoints/checkpoint-200")
    assert job["metadata"]["name"] == "cs-lora-train-3"
    assert job["metadata"]["labels"][labels.ATTEMPT] == "3"
    assert job["spec"]["template"]["metadata"]["labels"][labels.ATTEMPT] == "3"
    assert _container(job)["command"][-2:] == [
        "--resume", "/mnt/pvc/kubetune-artifacts/cs-lora/checkpoints/checkpoint-200",
    ]  # fmt: skip


def test_secrets_are_only_referenced(ctx_of: CtxOf) -> None:
    ctx = ctx_of("full")  # HF token for the base model, S3 credentials for the output
    for job in _all_jobs(ctx):
        env = _env(job)
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "hf-token",
            "key": "HF_TOKEN",
            "optional": False,
        }
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "s3-credentials", "key": var, "optional": False}
        assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
        for entry in env.values():
            if entry["name"].startswith(("HF_TOKEN", "AWS_")):
                assert "value" not in entry
        secret_volumes = {v["secret"]["secretName"] for v in _pod_spec(job)["volumes"] if "secret" in v}
        assert secret_volumes == {"hf-token", "s3-credentials"}
        rendered = json.dumps(job)
        assert "stringData" not in rendered and '"data"' not in rendered


def test_no_credentials_without_secret_refs(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    env = _env(jobs.train_job(ctx_of(spec_of()), 1))
    assert not [name for name in env if name.startswith(("HF_", "AWS_")) and name != "HF_HOME"]


def test_pvc_locations_are_mounted_under_the_pvc_root(ctx_of: CtxOf) -> None:
    job = jobs.train_job(ctx_of("lora"), 1)
    mounts = {m["mountPath"]: m for m in _container(job)["volumeMounts"]}
    assert mounts["/mnt/pvc/kubetune-data"]["readOnly"] is True
    assert mounts["/mnt/pvc/kubetune-artifacts"]["readOnly"] is False
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in _pod_spec(job)["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"kubetune-data", "kubetune-artifacts"}


def test_every_pod_is_restricted(ctx_of: CtxOf) -> None:
    for job in _all_jobs(ctx_of("multinode")):
        pod_spec = _pod_spec(job)
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert pod_spec["securityContext"]["runAsUser"] == pods.USER_ID
        assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = _container(job)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert pod_spec["restartPolicy"] == "Never"
        assert pod_spec["serviceAccountName"] == "cs-full-2n-trainer"


def test_kueue_label_and_suspended_creation(ctx_of: CtxOf) -> None:
    for job in _all_jobs(ctx_of("multinode")):
        assert job["metadata"]["labels"][labels.KUEUE_QUEUE_NAME] == "gpu-a100"
        assert job["spec"]["suspend"] is True


def test_no_kueue_without_queue_name(ctx_of: CtxOf) -> None:
    for job in _all_jobs(ctx_of("lora")):
        assert labels.KUEUE_QUEUE_NAME not in job["metadata"]["labels"]
        assert "suspend" not in job["spec"]


def test_scheduling_applies_to_gpu_pods_only(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    spec = spec_of(
        {
            "resources": {
                "nodeSelector": {"pool": "a100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "priorityClassName": "training-high",
            }
        }
    )
    ctx = ctx_of(spec)
    for job in (jobs.train_job(ctx, 1), jobs.evaluate_job(ctx)):
        pod_spec = _pod_spec(job)
        assert pod_spec["nodeSelector"] == {"pool": "a100"}
        assert pod_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod_spec["priorityClassName"] == "training-high"
    prepare = _pod_spec(jobs.prepare_job(ctx))
    assert not {"nodeSelector", "tolerations", "priorityClassName"} & set(prepare)


def test_prepare_is_cpu_only(ctx_of: CtxOf) -> None:
    job = jobs.prepare_job(ctx_of("full"), deadline_seconds=100)
    assert job["metadata"]["name"] == "cs-full-prepare"
    assert _container(job)["command"] == [
        "python", "-m", "kubetune_trainer", "prepare", "--config", "/etc/kubetune/config.json",
    ]  # fmt: skip
    resources = _container(job)["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    assert job["spec"]["activeDeadlineSeconds"] == 100


def test_evaluate_uses_one_gpu_and_exports(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    job = jobs.evaluate_job(ctx_of("full"))
    assert job["metadata"]["name"] == "cs-full-evaluate"
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == 1
    script = _container(job)["command"][2]
    assert re.fullmatch(
        r"python -m kubetune_trainer evaluate --config \S+ && exec python -m kubetune_trainer export --config \S+",
        script,
    )
    no_eval = jobs.evaluate_job(ctx_of(spec_of({"evaluation": {"enabled": False}})))
    assert _container(no_eval)["command"][2] == f"exec python -m kubetune_trainer export --config {config.CONFIG_PATH}"


def test_children_carry_labels_and_controller_owner(ctx_of: CtxOf) -> None:
    ctx = ctx_of("multinode")
    for obj in [*_all_jobs(ctx), jobs.train_service(ctx)]:
        meta = obj["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["labels"][labels.FINETUNEJOB] == "cs-full-2n"
        assert meta["labels"][labels.INSTANCE] == "cs-full-2n"
        assert meta["labels"][labels.NAME] == meta["labels"][labels.MANAGED_BY] == "kubetune"
        assert meta["labels"][labels.COMPONENT] in names.COMPONENTS
        (owner,) = meta["ownerReferences"]
        assert owner == {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "name": "cs-full-2n",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_pod_overrides_are_added_but_cannot_replace_our_labels(ctx_of: CtxOf) -> None:
    extra_labels, extra_annotations = context.pod_overrides(
        {
            labels.pod_labels_annotation("train"): '{"kwok.x-k8s.io/fail": "true", "kubetune.dev/finetunejob": "x"}',
            labels.pod_annotations_annotation("train"): '{"kwok.x-k8s.io/exit-code": "137"}',
        }
    )
    ctx = ctx_of("lora", extra_pod_labels=extra_labels, extra_pod_annotations=extra_annotations)
    template = jobs.train_job(ctx, 1)["spec"]["template"]["metadata"]
    assert template["labels"]["kwok.x-k8s.io/fail"] == "true"
    assert template["labels"][labels.FINETUNEJOB] == "cs-lora"
    assert template["annotations"] == {"kwok.x-k8s.io/exit-code": "137"}
    prepare = jobs.prepare_job(ctx)["spec"]["template"]["metadata"]
    assert "kwok.x-k8s.io/fail" not in prepare["labels"] and "annotations" not in prepare


@pytest.mark.parametrize(
    "value",
    ['{"a": 1}', "[1, 2]", "not json", '{"a": ["b"]}'],
)
def test_bad_pod_override_annotation_is_rejected(value: str) -> None:
    with pytest.raises(context.PodOverrideError, match=re.escape("kubetune.dev/train-pod-labels")):
        context.pod_overrides({labels.pod_labels_annotation("train"): value})


def test_long_names_fit_dns_labels(ctx_of: CtxOf, spec_of: Callable[..., Any]) -> None:
    name = "a" * 50  # the CRD's limit
    spec = spec_of({"method": "full", "resources": {"nodes": 1024, "gpusPerNode": 8}})
    ctx = ctx_of(spec, name=name)
    for attempt in (1, 99, 12345):
        job = jobs.train_job(ctx, attempt)
        hostname_of_last_pod = f"{job['metadata']['name']}-{1023}"
        assert len(hostname_of_last_pod) <= 63
        assert job["metadata"]["name"] == names.train_job(name, attempt, 1024)
    assert names.train_job(name, 1, 1024) != names.train_job(name, 2, 1024)
    for child in (names.prepare_job(name), names.evaluate_job(name), names.config_map(name), names.train_service(name)):
        assert len(child) <= 63
    assert names.fit("x" * 70, "-prepare") == names.fit("x" * 70, "-prepare")  # deterministic
    assert names.fit("short", "-prepare") == "short-prepare"
