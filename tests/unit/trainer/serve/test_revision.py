from __future__ import annotations

import re

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.serve.revision import REVISION_LENGTH, revision, revision_inputs

DIGEST = "sha256:" + "a" * 64
IMAGE = "nvcr.io/nvidia/tritonserver:24.10-trtllm-python-py3"


def _spec(**fields: object) -> v1alpha1.ServingSpec:
    return v1alpha1.ServingSpec.model_validate({"resources": {"gpus": 8}, **fields})


BASE = revision(DIGEST, _spec(), IMAGE)


def test_revision_is_short_lowercase_hex_and_stable() -> None:
    assert re.fullmatch(rf"[0-9a-f]{{{REVISION_LENGTH}}}", BASE)
    assert revision(DIGEST, _spec(), IMAGE) == BASE


@pytest.mark.parametrize(
    "changed",
    [
        {"quantization": "int8"},
        {"quantization": "w4a16"},
        {"backend": "python", "resources": {"gpus": 0}},
        {"engine": {"maxBatchSize": 16}},
        {"engine": {"maxNumTokens": 8192}},
        {"engine": {"maxInputLen": 1024}},
        {"engine": {"maxOutputLen": 128}},
        {"engine": {"tensorParallelism": 2}},
        {"engine": {"kvCacheFreeGpuMemFraction": 0.5}},
        {"engine": {"dynamicBatching": False}},
    ],
)
def test_serving_changes_make_a_new_revision(changed: dict[str, object]) -> None:
    assert revision(DIGEST, _spec(**changed), IMAGE) != BASE


def test_model_and_image_changes_make_a_new_revision() -> None:
    assert revision("sha256:" + "b" * 64, _spec(), IMAGE) != BASE
    assert revision(DIGEST, _spec(), IMAGE.replace("24.10", "24.11")) != BASE


@pytest.mark.parametrize(
    "unchanged",
    [
        {"replicas": 5},
        {"autoscaling": {"minReplicas": 1, "maxReplicas": 9}},
        {"resources": {"gpus": 8, "cpu": "16", "memory": "64Gi"}},
        {"rollout": {"maxSurge": 2, "smokeTest": {"prompt": "hi"}}},
        {"service": {"type": "NodePort"}},
        {"image": "ignored-because-the-resolved-image-is-passed"},
        {"engine": {"maxBatchSize": 32}},  # the default, written out
    ],
)
def test_scale_and_rollout_changes_keep_the_revision(unchanged: dict[str, object]) -> None:
    assert revision(DIGEST, _spec(**unchanged), IMAGE) == BASE


def test_build_image_counts_for_tensorrtllm_only() -> None:
    assert revision(DIGEST, _spec(), IMAGE, build_image="trtllm:0.16") != BASE
    python = _spec(backend="python", resources={"gpus": 0})
    assert revision(DIGEST, python, IMAGE, build_image="trtllm:0.16") == revision(DIGEST, python, IMAGE)


def test_inputs_are_json_ready_and_camel_case() -> None:
    inputs = revision_inputs(DIGEST, _spec(), IMAGE)
    assert inputs["engine"]["kvCacheFreeGpuMemFraction"] == 0.8  # type: ignore[index]
    assert inputs["quantization"] == "fp16"


@pytest.mark.parametrize(("digest", "image"), [("", IMAGE), (DIGEST, "")])
def test_empty_digest_or_image_is_rejected(digest: str, image: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        revision(digest, _spec(), image)
