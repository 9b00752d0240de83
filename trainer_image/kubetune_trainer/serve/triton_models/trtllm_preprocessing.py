"""Triton Python-backend model: the ``preprocessing`` step of the TensorRT-LLM ensemble.

Why it exists: the ``tensorrt_llm`` model takes token ids, clients send text. This step wraps the
prompt in the tokenizer's chat template (as during fine-tuning), tokenizes it, and fills the end
and pad token ids and the requested output length that the in-flight batcher needs. It is our own
small version of the step in TensorRT-LLM's ``inflight_batcher_llm`` example (no multimodal inputs,
no bad/stop word lists).

Parameters (``config.pbtxt``), all strings: ``tokenizer_dir`` (absolute, or relative to the version
directory), ``max_input_len``, ``max_output_len``, ``default_max_tokens``, ``apply_chat_template``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class _BadRequestError(ValueError):
    """A request the client must fix; answered with an error response."""


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    """Read one string parameter of the model configuration."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


def _optional(request: Any, name: str, count: int, default: int) -> np.ndarray:
    """An optional INT32 input as one value per prompt (broadcast from one value, or the default)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return np.full((count, 1), default, dtype=np.int32)
    values = tensor.as_numpy().reshape(-1).astype(np.int32)
    if len(values) == 1:
        values = np.repeat(values, count)
    if len(values) != count:
        raise _BadRequestError(f"{name} has {len(values)} values for {count} prompts")
    return values.reshape(count, 1)


class TritonPythonModel:
    """Tokenizes prompts for the ``tensorrt_llm`` model."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer named by the ``tokenizer_dir`` parameter."""
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        tokenizer_dir = os.path.join(version_dir, _parameter(config, "tokenizer_dir", "tokenizer"))
        if not os.path.isdir(tokenizer_dir):
            raise FileNotFoundError(f"tokenizer directory {tokenizer_dir} does not exist (see parameter tokenizer_dir)")
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.max_input_len = int(_parameter(config, "max_input_len", "2048"))
        self.max_output_len = int(_parameter(config, "max_output_len", "512"))
        self.default_max_tokens = min(int(_parameter(config, "default_max_tokens", "64")), self.max_output_len)
        self.chat_template = _parameter(config, "apply_chat_template", "true").lower() == "true"
        self.end_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_id

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenize every request; a bad request gets an error response, the others go on."""
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._tensors(request)))
            except _BadRequestError as err:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err))))
        return responses

    def finalize(self) -> None:
        """Nothing to release."""

    def _tensors(self, request: Any) -> list[Any]:
        """Output tensors for one request (``[batch, ...]`` each, input ids right-padded)."""
        query = pb_utils.get_input_tensor_by_name(request, "QUERY")
        prompts = [] if query is None else list(query.as_numpy().reshape(-1))
        if not prompts:
            raise _BadRequestError("text_input is required")
        ids = [self._encode(p.decode("utf-8", errors="replace") if isinstance(p, bytes) else str(p)) for p in prompts]
        output_len = _optional(request, "REQUEST_OUTPUT_LEN", len(ids), self.default_max_tokens)
        if output_len.min() < 1 or output_len.max() > self.max_output_len:
            raise _BadRequestError(f"max_tokens must be between 1 and {self.max_output_len}")
        end_id = _optional(request, "END_ID", len(ids), self.end_id)
        pad_id = _optional(request, "PAD_ID", len(ids), self.pad_id)
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int32)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
        lengths = np.array([[len(tokens)] for tokens in ids], dtype=np.int32)
        return [
            pb_utils.Tensor("INPUT_ID", input_ids),
            pb_utils.Tensor("REQUEST_INPUT_LEN", lengths),
            pb_utils.Tensor("REQUEST_OUTPUT_LEN", output_len),
            pb_utils.Tensor("OUT_END_ID", end_id),
            pb_utils.Tensor("OUT_PAD_ID", pad_id),
        ]

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
