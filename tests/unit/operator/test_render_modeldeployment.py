"""Manifests of a ModelDeployment's children, field by field."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune.render import modeldeployment as render
from kubetune.render import serving_meta as meta
from kubetune_trainer.serve import command as serve_command

PARENT = meta.Parent("chat", "ns", "uid-1")
REV = "0123456789ab"


def spec_of(**overrides: Any) -> v1alpha1.ModelDeploymentSpec:
    return v1alpha1.ModelDeploymentSpec.model_validate({"model": {"uri": "pvc://models/runs/job/model"}, **overrides})


def rev_of(spec: v1alpha1.ModelDeploymentSpec | None = None, **kw: Any) -> render.Revision:
    return render.Revision(
        revision=REV, spec=spec or spec_of(), model_uri="pvc://models/runs/job/model",
        engine_uri=f"pvc://models/runs/job/engines/{REV}", server_image="triton:24.10", build_image="trtllm:0.15",
        trainer_image="kubetune-trainer:0.1", **kw,
    )  # fmt: skip


def container(manifest: dict[str, Any], init: bool = False) -> dict[str, Any]:
    pod = manifest["spec"]["template"]["spec"]
    (only,) = pod["initContainers" if init else "containers"]
    return only


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


# --- the Triton Deployment ------------------------------------------------------------------------


def test_tensorrtllm_deployment_requests_gpus_and_carries_the_engine_settings() -> None:
    spec = spec_of(
        quantization="int8", resources={"gpus": 2, "gpuResourceName": "nvidia.com/gpu", "cpu": "8", "memory": "64Gi"},
        engine={"maxBatchSize": 64, "maxNumTokens": 8192, "maxInputLen": 1024, "maxOutputLen": 256,
                "kvCacheFreeGpuMemFraction": 0.9},
    )  # fmt: skip
    manifest = render.deployment(PARENT, rev_of(spec))
    triton = container(manifest)
    assert triton["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
    }
    assert env(triton).items() >= {
        "KUBETUNE_REVISION": REV, "KUBETUNE_BACKEND": "tensorrtllm", "KUBETUNE_QUANTIZATION": "int8",
        "KUBETUNE_MAX_BATCH_SIZE": "64", "KUBETUNE_MAX_NUM_TOKENS": "8192", "KUBETUNE_MAX_INPUT_LEN": "1024",
        "KUBETUNE_MAX_OUTPUT_LEN": "256", "KUBETUNE_KV_CACHE_FREE_GPU_MEM_FRACTION": "0.9",
        "KUBETUNE_TENSOR_PARALLELISM": "1",
    }.items()  # fmt: skip
    assert triton["command"][:2] == ["tritonserver", f"--model-repository=/mnt/pvc/models/runs/job/engines/{REV}"]
    assert "--allow-gpu-metrics=true" in triton["command"]
    pod = manifest["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_python_backend_serves_on_cpu() -> None:
    spec = spec_of(backend="python", resources={"gpus": 1, "cpu": "2", "memory": "4Gi"})
    manifest = render.deployment(PARENT, rev_of(spec))
    triton = container(manifest)
    assert triton["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert "tolerations" not in manifest["spec"]["template"]["spec"]
    assert "--allow-gpu-metrics=false" in triton["command"]
    assert not any(a.startswith("--backend-config") for a in triton["command"])


def test_tensor_parallelism_runs_one_mpi_rank_per_gpu() -> None:
    spec = spec_of(engine={"tensorParallelism": 2}, resources={"gpus": 2})
    command = container(render.deployment(PARENT, rev_of(spec)))["command"]
    assert command[:4] == ["mpirun", "--allow-run-as-root", "-n", "1"]
    ranks = " ".join(command).split(" : ")
    assert len(ranks) == 2
    assert "shm-region-prefix-name=prefix0_" in ranks[0] and "--load-model" not in ranks[0]
    assert "shm-region-prefix-name=prefix1_" in ranks[1]
    assert "--model-control-mode=explicit --load-model=tensorrt_llm" in ranks[1]


def test_rolling_update_probes_ports_and_scrape_annotations() -> None:
    spec = spec_of(replicas=3, rollout={"maxSurge": "25%", "progressDeadlineSeconds": 900})
    manifest = render.deployment(PARENT, rev_of(spec))
    body = manifest["spec"]
    assert body["replicas"] == 3
    assert body["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert body["progressDeadlineSeconds"] == 900
    assert body["selector"] == {"matchLabels": {"kubetune.dev/modeldeployment": "chat",
                                                "app.kubernetes.io/component": "server"}}  # fmt: skip
    template = body["template"]
    assert template["metadata"]["labels"]["kubetune.dev/revision"] == REV
    assert body["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["annotations"].items() >= {
        "kubetune.dev/revision": REV, "prometheus.io/scrape": "true", "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }.items()  # fmt: skip
    triton = container(manifest)
    assert triton["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
    ]
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["startupProbe"]["failureThreshold"] * triton["startupProbe"]["periodSeconds"] >= 900


def test_a_new_revision_changes_the_pod_template() -> None:
    old = render.deployment(PARENT, rev_of())
    new = render.deployment(PARENT, rev_of().__class__(**{**rev_of().__dict__, "revision": "fedcba987654"}))
    assert old["spec"]["selector"] == new["spec"]["selector"]
    assert old["spec"]["template"] != new["spec"]["template"]


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    spec = spec_of(autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilization": 70})
    assert "replicas" not in render.deployment(PARENT, rev_of(spec))["spec"]
    hpa = render.autoscaler(PARENT, spec)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                      "target": {"type": "Utilization", "averageUtilization": 70}}}],
    }  # fmt: skip
    assert render.autoscaler(PARENT, spec_of()) is None


def _all_pods(spec: v1alpha1.ModelDeploymentSpec) -> list[dict[str, Any]]:
    rev = rev_of(spec)
    return [m["spec"]["template"]["spec"] for m in (
        render.deployment(PARENT, rev), render.build_job(PARENT, rev), render.smoke_job(PARENT, rev))]  # fmt: skip


@pytest.mark.parametrize("backend", ["tensorrtllm", "python"])
def test_every_pod_is_restricted(backend: str) -> None:
    for pod in _all_pods(spec_of(backend=backend)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in [*pod["containers"], *pod.get("initContainers", [])]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert all("value" in e or "secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", []))
            assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]


def test_triton_reads_the_claim_read_only() -> None:
    pod = render.deployment(PARENT, rev_of())["spec"]["template"]["spec"]
    assert {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert {"name": "pvc-0", "mountPath": "/mnt/pvc/models", "readOnly": True} in container(
        {"spec": {"template": {"spec": pod}}}
    )["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in pod["volumes"]


# --- the build Job --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantization", "expected", "absent"),
    [
        ("fp16", ["convert_checkpoint.py", "--dtype float16"], ["--use_weight_only", "quantize.py"]),
        ("int8", ["convert_checkpoint.py", "--use_weight_only --weight_only_precision int8"], ["quantize.py"]),
        ("w4a16", ["quantization/quantize.py", "--qformat int4_awq --awq_block_size 128"], ["convert_checkpoint"]),
        ("fp8", ["quantization/quantize.py", "--qformat fp8 --kv_cache_dtype fp8"], ["convert_checkpoint"]),
    ],
)
def test_build_job_command_per_quantization(quantization: str, expected: list[str], absent: list[str]) -> None:
    spec = spec_of(quantization=quantization, engine={"maxBatchSize": 16, "maxInputLen": 1000, "maxOutputLen": 24})
    job = render.build_job(PARENT, rev_of(spec))
    engine = container(job, init=True)
    assert engine["image"] == "trtllm:0.15"
    assert engine["command"][:2] == ["sh", "-c"]
    script = engine["command"][2]
    for fragment in [*expected, "trtllm-build", "--max_batch_size 16", "--max_input_len 1000", "--max_seq_len 1024"]:
        assert fragment in script, fragment
    for fragment in absent:
        assert fragment not in script, fragment
    assert "--model_dir /mnt/pvc/models/runs/job/model" in script
    assert f"--output_dir /mnt/pvc/models/runs/job/engines/{REV}.engine" in script
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    tp = render.build_job(PARENT, rev_of(spec_of(engine={"tensorParallelism": 4}, resources={"gpus": 8})))
    assert container(tp, init=True)["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert "--tp_size 4" in container(tp, init=True)["command"][2]
    writer = container(job)
    assert writer["image"] == "kubetune-trainer:0.1"
    argv = render.repository_command(rev_of(spec))
    assert argv[:5] == ["python", "-m", "kubetune_trainer", "serve", "build"]
    assert argv[argv.index("--engine-source") + 1] == f"/mnt/pvc/models/runs/job/engines/{REV}.engine"
    assert argv[argv.index("--engine-dir") + 1] == f"/mnt/pvc/models/runs/job/engines/{REV}/tensorrt_llm/1"
    assert shlex.join(argv) in writer["command"][2]
    assert f"rm -rf /mnt/pvc/models/runs/job/engines/{REV}.engine" in writer["command"][2]
    assert "/dev/termination-log" in writer["command"][2]


def test_python_build_job_runs_on_cpu_without_an_engine() -> None:
    job = render.build_job(PARENT, rev_of(spec_of(backend="python")))
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "tolerations" not in pod
    writer = container(job)
    assert not any("gpu" in key for key in writer["resources"]["limits"])
    argv = render.repository_command(rev_of(spec_of(backend="python")))
    assert "--engine-source" not in argv and "--model-name" in argv and argv[argv.index("--model-name") + 1] == "llm"
    assert {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "models", "readOnly": False}} in pod["volumes"]


def test_build_job_names_labels_and_owner() -> None:
    job = render.build_job(PARENT, rev_of())
    assert job["metadata"]["name"] == f"chat-build-{REV}"
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/name": "kubetune", "app.kubernetes.io/managed-by": "kubetune",
        "app.kubernetes.io/instance": "chat", "app.kubernetes.io/component": "build",
        "kubetune.dev/modeldeployment": "chat", "kubetune.dev/revision": REV,
    }  # fmt: skip
    assert job["metadata"]["ownerReferences"] == [
        {"apiVersion": "kubetune.dev/v1alpha1", "kind": "ModelDeployment", "name": "chat", "uid": "uid-1",
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert job["spec"]["backoffLimit"] == render.BUILD_BACKOFF_LIMIT


def test_the_build_pod_reads_the_serving_spec_with_the_real_parser(tmp_path: Path) -> None:
    spec = spec_of(quantization="w4a16", engine={"maxBatchSize": 8, "kvCacheFreeGpuMemFraction": 0.5}, replicas=2)
    job = render.build_job(PARENT, rev_of(spec))
    template = job["spec"]["template"]
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "serving-spec")
    (item,) = volume["downwardAPI"]["items"]
    assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{render.SPEC_ANNOTATION}']"
    path = tmp_path / item["path"]
    path.write_text(template["metadata"]["annotations"][render.SPEC_ANNOTATION])
    parsed = serve_command.load_serving_spec(path)
    assert parsed.model_dump() == v1alpha1.ServingSpec.model_validate(spec.model_dump(exclude={"model"})).model_dump()
    mount = {"name": "serving-spec", "mountPath": render.SPEC_DIR, "readOnly": True}
    assert mount in container(job)["volumeMounts"]
    argv = render.repository_command(rev_of(spec))
    assert argv[argv.index("--spec") + 1] == f"{render.SPEC_DIR}/{item['path']}"


# --- smoke test, Service, endpoint ----------------------------------------------------------------


def test_smoke_job_sends_the_prompt_to_the_service() -> None:
    spec = spec_of(rollout={"smokeTest": {"prompt": "Where is my parcel?", "maxTokens": 8, "timeoutSeconds": 90}},
                   service={"httpPort": 80})  # fmt: skip
    job = render.smoke_job(PARENT, rev_of(spec))
    assert job["metadata"]["name"] == f"chat-smoke-{REV}"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 90 + render.SMOKE_STARTUP_SECONDS
    assert container(job)["command"] == [
        "python", "-m", "kubetune_trainer", "serve", "smoke", "--url", "http://chat.ns.svc.cluster.local:80",
        "--model", "llm", "--prompt", "Where is my parcel?", "--max-tokens", "8", "--timeout", "90",
    ]  # fmt: skip
    args = serve_command.argparse.ArgumentParser()
    serve_command.add_arguments(args)
    parsed = args.parse_args(container(job)["command"][4:])
    assert (parsed.serve_command, parsed.model, parsed.max_tokens, parsed.timeout) == ("smoke", "llm", 8, 90.0)


def test_service_and_endpoint() -> None:
    spec = spec_of(service={"type": "NodePort", "httpPort": 80, "grpcPort": 81, "metricsPort": 82})
    svc = render.service(PARENT, spec)
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == meta.selector("chat")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, "http"), ("grpc", 81, "grpc"), ("metrics", 82, "metrics"),
    ]  # fmt: skip
    assert render.endpoint(PARENT, spec) == {
        "http": "http://chat.ns.svc.cluster.local:80",
        "grpc": "chat.ns.svc.cluster.local:81",
    }


def test_engines_configmap() -> None:
    cm = render.engines_configmap(PARENT, {"r2": "{}", "r1": "{}"})
    assert cm["metadata"]["name"] == "chat-engines"
    assert list(cm["data"]) == ["r1", "r2"]
    assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "engines"


# --- names and pass-through labels ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["chat", "a" * 63, "b" * 200, "model.v1.prod", "1st-model", "x" * 40 + "." + "y" * 100]
)
def test_names_fit_and_are_valid_dns_labels(name: str) -> None:
    parent = meta.Parent(name, "ns", "uid")
    rev = rev_of()
    children = [
        render.deployment(parent, rev), render.service(parent, spec_of()), render.build_job(parent, rev),
        render.smoke_job(parent, rev), render.engines_configmap(parent, {}),
    ]  # fmt: skip
    for child in children:
        child_name = child["metadata"]["name"]
        assert len(child_name) <= 63
        assert meta._DNS_1035.match(child_name), child_name
        assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())
    assert len({c["metadata"]["name"] for c in children[2:]}) == 3
    if len(name) <= 63 and meta._DNS_1035.match(name):
        assert meta.server_name(name) == name


def test_cleaned_names_do_not_collide() -> None:
    assert meta.server_name("a.b") != meta.server_name("a-b")
    assert meta.build_job_name("m" * 80, REV) != meta.build_job_name("m" * 81, REV)


def test_pod_labels_annotation_reaches_only_its_component() -> None:
    labels = json.dumps({"kwok.x-k8s.io/fail": "true", "kubetune.dev/revision": "x"})
    parent = meta.Parent("chat", "ns", "uid", {"kubetune.dev/smoke-pod-labels": labels})
    rev = rev_of()
    smoke = render.smoke_job(parent, rev)["spec"]["template"]["metadata"]["labels"]
    assert smoke["kwok.x-k8s.io/fail"] == "true"
    assert smoke["kubetune.dev/revision"] == REV  # kubetune's own labels win
    for manifest in (render.deployment(parent, rev), render.build_job(parent, rev)):
        assert "kwok.x-k8s.io/fail" not in manifest["spec"]["template"]["metadata"]["labels"]


def test_pod_annotations_pass_through_without_overriding_ours() -> None:
    parent = meta.Parent("chat", "ns", "uid", {
        "kubetune.dev/build-pod-annotations": json.dumps({"kwok.x-k8s.io/duration": "150ms"}),
        "kubetune.dev/server-pod-annotations": json.dumps({"kubetune.dev/revision": "x", "team": "search"}),
    })  # fmt: skip
    rev = rev_of()
    build = render.build_job(parent, rev)["spec"]["template"]["metadata"]["annotations"]
    assert build["kwok.x-k8s.io/duration"] == "150ms" and render.SPEC_ANNOTATION in build
    server = render.deployment(parent, rev)["spec"]["template"]["metadata"]["annotations"]
    assert (server["kubetune.dev/revision"], server["team"]) == (REV, "search")
    assert "annotations" not in render.smoke_job(parent, rev)["spec"]["template"]["metadata"]


@pytest.mark.parametrize("value", ["not json", "[1]", '{"a": 1}'])
def test_malformed_pod_labels_are_ignored_and_reported(value: str) -> None:
    parent = meta.Parent("chat", "ns", "uid", {"kubetune.dev/server-pod-labels": value})
    labels = render.deployment(parent, rev_of())["spec"]["template"]["metadata"]["labels"]
    assert labels == meta.child_labels("chat", meta.SERVER, REV)
    assert meta.malformed_pod_label_annotations(parent.annotations) == ["kubetune.dev/server-pod-labels"]
    assert meta.malformed_pod_label_annotations({"kubetune.dev/server-pod-labels": '{"a": "b"}'}) == []
    assert meta.malformed_pod_label_annotations({"kubetune.dev/smoke-pod-annotations": value}) == [
        "kubetune.dev/smoke-pod-annotations"
    ]


# --- models off a volume ----------------------------------------------------------------------------


def remote_rev(model_uri: str, secret: str | None = "creds") -> render.Revision:
    spec = spec_of(model={"uri": model_uri}, engineStorage="pvc://engines/cache")
    return render.Revision(
        revision=REV, spec=spec, model_uri=model_uri, engine_uri=f"pvc://engines/cache/engines/{REV}",
        server_image="triton:24.10", build_image="trtllm:0.15", trainer_image="kubetune-trainer:0.1",
        secret_name=secret,
    )  # fmt: skip


def secret_refs(c: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    out = {}
    for e in c.get("env", []):
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = (ref["name"], ref["key"], ref["optional"])
    return out


def test_an_hf_model_is_fetched_next_to_the_repository_before_the_engine_build() -> None:
    rev = remote_rev("hf://org/name@main")
    pod = render.build_job(PARENT, rev)["spec"]["template"]["spec"]
    fetch, engine_build = pod["initContainers"]
    copy = f"/mnt/pvc/engines/cache/engines/{REV}.model"
    assert fetch["name"] == "fetch" and fetch["image"] == "kubetune-trainer:0.1"
    assert fetch["command"] == [
        "python", "-m", "kubetune_trainer", "serve", "fetch", "--uri", "hf://org/name@main", "--output", copy,
    ]  # fmt: skip
    assert secret_refs(fetch) == {"HF_TOKEN": ("creds", "HF_TOKEN", False)}
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    # Only the engine claim is mounted (read-write); the model has no claim.
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["engines"]
    assert {m["mountPath"] for m in fetch["volumeMounts"]} >= {"/mnt/pvc/engines"}
    # The engine build and the repository writer read the copy.
    assert copy in engine_build["command"][-1]
    writer = pod["containers"][0]
    assert f"--model {copy}" in writer["command"][-1]
    # No credentials reach the other containers.
    assert secret_refs(engine_build) == {} and secret_refs(writer) == {}


def test_an_s3_model_gets_the_aws_credentials_and_the_python_backend_fetches_too() -> None:
    spec = spec_of(model={"uri": "s3://bucket/model"}, engineStorage="pvc://engines/cache", backend="python")
    rev = replace(remote_rev("s3://bucket/model"), spec=spec)
    (fetch,) = render.build_job(PARENT, rev)["spec"]["template"]["spec"]["initContainers"]
    assert secret_refs(fetch) == {
        "AWS_ACCESS_KEY_ID": ("creds", "AWS_ACCESS_KEY_ID", False),
        "AWS_SECRET_ACCESS_KEY": ("creds", "AWS_SECRET_ACCESS_KEY", False),
        "AWS_SESSION_TOKEN": ("creds", "AWS_SESSION_TOKEN", True),
        "AWS_REGION": ("creds", "AWS_REGION", True),
        "AWS_ENDPOINT_URL": ("creds", "AWS_ENDPOINT_URL", True),
    }
    anonymous = replace(rev, secret_name=None)
    (fetch,) = render.build_job(PARENT, anonymous)["spec"]["template"]["spec"]["initContainers"]
    assert secret_refs(fetch) == {}


def test_a_model_on_a_volume_is_not_fetched() -> None:
    pod = render.build_job(PARENT, rev_of(spec_of(backend="python")))["spec"]["template"]["spec"]
    assert "initContainers" not in pod
