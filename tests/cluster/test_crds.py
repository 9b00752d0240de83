"""The generated CRDs on a real API server: examples apply, invalid input is rejected at
admission with the field named, defaults are stored, and ``kubectl explain`` reads well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import Cluster, KubectlError
from tests.support.crds import install_crds
from tests.support.specs import INVALID_DEPLOYMENTS, INVALID_JOBS, MINIMAL_DEPLOYMENT, MINIMAL_JOB, job

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    install_crds(cluster)


def manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubetune.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def dry_run(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> str:
    """Submit with server-side dry run; return the rejection text ('' when admitted)."""
    try:
        cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))
    except KubectlError as err:
        return err.stderr
    return ""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_server_dry_run(cluster: Cluster, crds: None, namespace: str, path: Path) -> None:
    cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))


def test_invalid_manifests_are_rejected_naming_the_field(cluster: Cluster, crds: None, namespace: str) -> None:
    cases = [(d, manifest("FineTuneJob", "bad", s), f) for d, s, f in INVALID_JOBS]
    cases += [(d, manifest("ModelDeployment", "bad", s), f) for d, s, f in INVALID_DEPLOYMENTS]
    long_name = manifest("FineTuneJob", "x" * 51, MINIMAL_JOB)
    cases.append(("name too long for child names", long_name, "metadata.name"))
    cases.append(
        (
            "deploy template fp8 on python",
            manifest("FineTuneJob", "bad", job(deploy={"backend": "python", "quantization": "fp8"})),
            "spec.deploy.quantization",
        )
    )
    assert len(cases) >= 30
    problems = []
    for description, obj, field in cases:
        error = dry_run(cluster, namespace, obj)
        if not error:
            problems.append(f"{description}: admitted")
        elif field.split(".")[-1] not in error:
            problems.append(f"{description}: message does not name {field!r}: {error.strip()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("spec.method", {"method": "freeze"}),
        ("spec.baseModel", {"baseModel": {"uri": "hf://other/model"}}),
        ("spec.dataset", {"dataset": {"uri": "pvc://data/other.jsonl"}}),
    ],
)
def test_immutable_fields_cannot_change(
    cluster: Cluster, crds: None, namespace: str, field: str, change: dict[str, Any]
) -> None:
    cluster.apply(manifest("FineTuneJob", "immutable", MINIMAL_JOB), namespace=namespace)
    with pytest.raises(KubectlError) as err:
        cluster.kubectl(
            "patch",
            "ftj",
            "immutable",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": change}),
        )
    assert field in err.value.stderr and "immutable" in err.value.stderr


def test_mutable_fields_can_change(cluster: Cluster, crds: None, namespace: str) -> None:
    cluster.apply(manifest("FineTuneJob", "mutable", MINIMAL_JOB), namespace=namespace)
    cluster.kubectl("patch", "ftj", "mutable", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    assert cluster.get("ftj", "mutable", namespace=namespace)["spec"]["suspend"] is True


def test_defaults_are_stored_without_the_operator(cluster: Cluster, crds: None, namespace: str) -> None:
    cluster.apply(manifest("FineTuneJob", "defaults", MINIMAL_JOB), namespace=namespace)
    cluster.apply(manifest("ModelDeployment", "defaults", MINIMAL_DEPLOYMENT), namespace=namespace)
    spec = cluster.get("ftj", "defaults", namespace=namespace)["spec"]
    assert spec["method"] == "lora"
    assert spec["training"]["learningRate"] == 1e-4
    assert spec["training"]["minLearningRate"] == 1e-6
    assert spec["training"]["gradientAccumulationSteps"] == 4
    assert spec["training"]["scheduler"] == "cosine"
    assert spec["dataset"]["cleaning"]["qualityFilter"]["threshold"] == 0.7
    assert spec["dataset"]["cleaning"]["balance"]["minPerIntent"] == 500
    assert spec["retries"]["maxRetries"] == 3
    mdep = cluster.get("mdep", "defaults", namespace=namespace)["spec"]
    assert mdep["engine"]["maxBatchSize"] == 32
    assert mdep["engine"]["maxNumTokens"] == 4096
    assert mdep["engine"]["kvCacheFreeGpuMemFraction"] == 0.8
    assert mdep["rollout"]["maxUnavailable"] == 0
    assert mdep["rollout"]["smokeTest"]["enabled"] is True


def test_kubectl_explain_prints_descriptions(cluster: Cluster, crds: None) -> None:
    lora_r = cluster.kubectl("explain", "finetunejob.spec.lora.r")
    assert "Rank of the update matrices" in lora_r
    engine = cluster.kubectl("explain", "modeldeployment.spec.engine")
    assert "TensorRT-LLM engine" in engine and "maxBatchSize" in engine


def test_printer_columns_and_short_names(cluster: Cluster, crds: None, namespace: str) -> None:
    cluster.apply(manifest("FineTuneJob", "columns", MINIMAL_JOB), namespace=namespace)
    header = cluster.kubectl("get", "ftj", "-n", namespace).splitlines()[0].split()
    assert header[:5] == ["NAME", "PHASE", "METHOD", "PROGRESS", "LOSS"]
    assert "columns" in cluster.kubectl("get", "kubetune", "-n", namespace)
