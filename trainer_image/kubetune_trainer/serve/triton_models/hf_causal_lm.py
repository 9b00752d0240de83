"""Triton Python-backend model: text in, text out, with a transformers causal LM.

Why it exists: the ``python`` backend of a ModelDeployment serves the merged fine-tuned model on
nodes without TensorRT-LLM (CPU nodes, small GPUs, CI). Its tensor names follow Triton's generate
extension and the TensorRT-LLM ensemble (``text_input``, ``max_tokens``, ``temperature`` ->
``text_output``), so ``POST /v2/models/<name>/generate`` and clients written for either backend work.

Every request in a dynamically batched ``execute`` call is run in one ``generate`` call per
temperature (left padding), so Triton's dynamic batcher turns concurrent requests into one forward
pass. The prompt is wrapped in the tokenizer's chat template, as during fine-tuning.

Parameters (``config.pbtxt``), all strings: ``model_dir`` (absolute, or relative to the version
directory), ``max_input_len``, ``max_output_len``, ``default_max_tokens``, ``device``
(auto/cpu/cuda), ``num_threads`` (torch intra-op threads; 0: the CPUs this container may use),
``apply_chat_template`` (true/false).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


@dataclass
class _Item:
    """One prompt of one request, after validation."""

    request: int
    input_ids: list[int]
    max_tokens: int
    temperature: float


class _BadRequestError(ValueError):
    """A request the client must fix; answered with an error response, the batch goes on."""


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    """Read one string parameter of the model configuration."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


def _flat(request: Any, name: str) -> np.ndarray | None:
    """An input tensor as a flat numpy array, or None when the optional input is absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


def _per_prompt(values: np.ndarray | None, count: int, default: float, name: str) -> list[float]:
    """Broadcast an optional per-request input to one value per prompt."""
    if values is None:
        return [default] * count
    if len(values) == 1:
        return [float(values[0])] * count
    if len(values) != count:
        raise _BadRequestError(f"{name} has {len(values)} values for {count} prompts")
    return [float(value) for value in values]


def _cpu_budget() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's CPU limit).

    torch defaults to one thread per host core; in a pod limited to fewer cores that oversubscribes
    the quota and OpenMP threads stall each other.
    """
    cpus = len(os.sched_getaffinity(0))
    for quota_file, period_file in (
        ("/sys/fs/cgroup/cpu.max", None),
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ):
        try:
            with open(quota_file) as handle:
                fields = handle.read().split()
            if period_file is not None:
                with open(period_file) as handle:
                    fields.append(handle.read().strip())
        except OSError:
            continue
        if len(fields) == 2 and fields[0] not in ("max", "-1"):
            cpus = min(cpus, max(1, -(-int(fields[0]) // int(fields[1]))))
        break
    return max(1, cpus)


class TritonPythonModel:
    """The model Triton instantiates once per instance of ``instance_group``."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer and the model named by the ``model_dir`` parameter."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        model_dir = os.path.join(version_dir, _parameter(config, "model_dir", "model"))
        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise FileNotFoundError(f"model directory {model_dir} has no config.json (see parameter model_dir)")
        self.max_input_len = int(_parameter(config, "max_input_len", "2048"))
        self.max_output_len = int(_parameter(config, "max_output_len", "512"))
        self.default_max_tokens = min(int(_parameter(config, "default_max_tokens", "64")), self.max_output_len)
        self.chat_template = _parameter(config, "apply_chat_template", "true").lower() == "true"
        device = _parameter(config, "device", "auto")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.torch = torch
        threads = int(_parameter(config, "num_threads", "0")) or _cpu_budget()
        torch.set_num_threads(threads)

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        self.model = model.to(self.device).eval()
        pb_utils.Logger.log_info(f"loaded {model_dir} on {self.device} ({dtype})")

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer a (dynamically batched) list of requests, one response each, in order."""
        responses: list[Any] = [None] * len(requests)
        items: list[_Item] = []
        for index, request in enumerate(requests):
            try:
                items += self._parse(index, request)
            except _BadRequestError as err:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err)))
        texts = self._generate_all(items)
        per_request: dict[int, list[str]] = {}
        for item, text in zip(items, texts, strict=True):
            per_request.setdefault(item.request, []).append(text)
        for index, outputs in per_request.items():
            array = np.array([[text.encode("utf-8")] for text in outputs], dtype=np.object_)
            responses[index] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("text_output", array)])
        return responses

    def finalize(self) -> None:
        """Release the model."""
        del self.model

    def _parse(self, index: int, request: Any) -> list[_Item]:
        """Validate one request and tokenize its prompts."""
        prompts = _flat(request, "text_input")
        if prompts is None or len(prompts) == 0:
            raise _BadRequestError("text_input is required")
        count = len(prompts)
        max_tokens = _per_prompt(_flat(request, "max_tokens"), count, self.default_max_tokens, "max_tokens")
        temperatures = _per_prompt(_flat(request, "temperature"), count, 0.0, "temperature")
        items = []
        for prompt, tokens, temperature in zip(prompts, max_tokens, temperatures, strict=True):
            if not 1 <= tokens <= self.max_output_len:
                raise _BadRequestError(f"max_tokens must be between 1 and {self.max_output_len}, got {int(tokens)}")
            if not 0.0 <= temperature <= 100.0:
                raise _BadRequestError(f"temperature must be between 0 and 100, got {temperature}")
            ids = self._encode(prompt.decode("utf-8", errors="replace") if isinstance(prompt, bytes) else str(prompt))
            items.append(_Item(index, ids, int(tokens), float(temperature)))
        return items

    def _encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt wrapped in the chat template (when the tokenizer has one)."""
        if not prompt.strip():
            raise _BadRequestError("text_input is empty")
        if self.chat_template and self.tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt)["input_ids"]
        if len(ids) > self.max_input_len:
            raise _BadRequestError(f"the prompt has {len(ids)} tokens; the limit (maxInputLen) is {self.max_input_len}")
        return list(ids)

    def _generate_all(self, items: list[_Item]) -> list[str]:
        """Generate for every item, one ``generate`` call per distinct temperature."""
        texts = [""] * len(items)
        for temperature in sorted({item.temperature for item in items}):
            group = [i for i, item in enumerate(items) if item.temperature == temperature]
            outputs = self._generate([items[i] for i in group], temperature)
            for i, text in zip(group, outputs, strict=True):
                texts[i] = text
        return texts

    def _generate(self, items: list[_Item], temperature: float) -> list[str]:
        """Run one left-padded batch and decode each item's first ``max_tokens`` new tokens."""
        torch = self.torch
        width = max(len(item.input_ids) for item in items)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            input_ids[row, width - len(item.input_ids) :] = torch.tensor(item.input_ids)
            attention[row, width - len(item.input_ids) :] = 1
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                max_new_tokens=max(item.max_tokens for item in items),
                pad_token_id=pad,
                **sampling,
            )
        new_tokens = output[:, width:].cpu()
        return [
            str(self.tokenizer.decode(new_tokens[row, : item.max_tokens], skip_special_tokens=True))
            for row, item in enumerate(items)
        ]
