"""Specs shared by the unit tests (pydantic + cel-python) and the cluster tests (API server).

The same invalid manifests must be rejected in both places, with a message naming the field:
that is what keeps local validation (``kubetune run --local``) and admission in agreement.
"""

from __future__ import annotations

import copy
from typing import Any

MINIMAL_JOB: dict[str, Any] = {
    "baseModel": {"uri": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"},
    "dataset": {"uri": "pvc://data/dialogues.jsonl"},
    "output": {"uri": "pvc://artifacts/job"},
}
MINIMAL_DEPLOYMENT: dict[str, Any] = {"model": {"fineTuneJobRef": {"name": "job"}}}


def job(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL_JOB)
    spec.update(changes)
    return spec


def deployment(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL_DEPLOYMENT)
    spec.update(changes)
    return spec


# (description, spec, expected words in the error): each is rejected by the model validation.
INVALID_JOBS = [
    ("bad base model uri", job(baseModel={"uri": "http://example/model"}), "baseModel.uri"),
    ("hf uri without org", job(baseModel={"uri": "hf://model"}), "baseModel.uri"),
    ("both uri and job ref", job(baseModel={"uri": "hf://a/b", "fineTuneJobRef": {"name": "x"}}), "spec.baseModel"),
    ("neither uri nor job ref", job(baseModel={}), "spec.baseModel"),
    ("bad dataset uri", job(dataset={"uri": "/tmp/file.jsonl"}), "dataset.uri"),
    ("bad format", job(dataset={"uri": "pvc://d/x", "format": "csv"}), "dataset.format"),
    ("split too large", job(dataset={"uri": "pvc://d/x", "validationSplit": 0.9}), "validationSplit"),
    ("bad method", job(method="rlhf"), "method"),
    ("lora rank zero", job(lora={"r": 0}), "lora.r"),
    ("lora with full", job(method="full", lora={"r": 8}), "spec.lora"),
    ("qlora block with lora", job(qlora={"bits": 4}), "spec.qlora"),
    ("qlora bits 3", job(method="qlora", qlora={"bits": 3}), "qlora.bits"),
    ("prefix block with lora", job(prefix={"numVirtualTokens": 8}), "spec.prefix"),
    ("freeze block with lora", job(freeze={"trainableLayers": 2}), "spec.freeze"),
    ("full without gpus", job(method="full", resources={"gpusPerNode": 0}), "gpusPerNode"),
    ("multi-node prefix", job(method="prefix", resources={"nodes": 2}), "nodes"),
    ("min lr above lr", job(training={"learningRate": 1e-5, "minLearningRate": 1e-4}), "minLearningRate"),
    ("negative epochs", job(training={"epochs": -1}), "epochs"),
    ("bad precision", job(training={"precision": "fp8"}), "precision"),
    ("zero stage 4", job(deepspeed={"zeroStage": 4}), "zeroStage"),
    ("offload params below stage 3", job(deepspeed={"zeroStage": 2, "offloadParams": True}), "offloadParams"),
    ("bad output uri", job(output={"uri": "hf://org/name"}), "output.uri"),
    ("unknown field", job(learningrate=1e-4), "learningrate"),
    ("wrong type", job(training={"epochs": "many"}), "epochs"),
    (
        "threshold above one",
        job(dataset={"uri": "pvc://d/x", "cleaning": {"qualityFilter": {"threshold": 1.5}}}),
        "threshold",
    ),
    (
        "unknown pii entity",
        job(dataset={"uri": "pvc://d/x", "cleaning": {"piiRedaction": {"entities": ["ssn"]}}}),
        "entities",
    ),
]

INVALID_DEPLOYMENTS = [
    ("both model sources", deployment(model={"uri": "hf://a/b", "fineTuneJobRef": {"name": "x"}}), "spec.model"),
    ("no model source", deployment(model={}), "spec.model"),
    ("fp8 on python", deployment(backend="python", quantization="fp8"), "quantization"),
    ("int8 on python", deployment(backend="python", quantization="int8"), "quantization"),
    ("bad quantization", deployment(quantization="int3"), "quantization"),
    ("kv fraction above one", deployment(engine={"kvCacheFreeGpuMemFraction": 1.5}), "kvCacheFreeGpuMemFraction"),
    ("tp above gpus", deployment(engine={"tensorParallelism": 4}, resources={"gpus": 2}), "resources.gpus"),
    ("autoscaling min above max", deployment(autoscaling={"minReplicas": 5, "maxReplicas": 2}), "minReplicas"),
    ("bad service type", deployment(service={"type": "Ingress"}), "type"),
    ("hf model without engine storage", deployment(model={"uri": "hf://org/name@main"}), "engineStorage"),
    ("s3 model without engine storage", deployment(model={"uri": "s3://bucket/model"}), "engineStorage"),
    ("engine storage off a claim", deployment(engineStorage="s3://bucket/engines"), "engineStorage"),
]
