"""Triton Python-backend model: the ``postprocessing`` step of the TensorRT-LLM ensemble.

Why it exists: the ``tensorrt_llm`` model answers with token ids (``[beams, tokens]`` per request
plus each beam's length); clients want text. This step detokenizes each beam up to its length.
Our own small version of the step in TensorRT-LLM's ``inflight_batcher_llm`` example.

Parameters (``config.pbtxt``), all strings: ``tokenizer_dir`` (absolute, or relative to the version
directory), ``skip_special_tokens`` (true/false).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    """Read one string parameter of the model configuration."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


class TritonPythonModel:
    """Detokenizes the output of the ``tensorrt_llm`` model."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer named by the ``tokenizer_dir`` parameter."""
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        tokenizer_dir = os.path.join(version_dir, _parameter(config, "tokenizer_dir", "tokenizer"))
        if not os.path.isdir(tokenizer_dir):
            raise FileNotFoundError(f"tokenizer directory {tokenizer_dir} does not exist (see parameter tokenizer_dir)")
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.skip_special_tokens = _parameter(config, "skip_special_tokens", "true").lower() == "true"

    def execute(self, requests: list[Any]) -> list[Any]:
        """Decode every request's beams into ``OUTPUT`` (``[batch, beams]`` strings)."""
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            tokens = tokens.reshape(-1, *tokens.shape[-2:])  # [batch, beams, tokens]
            lengths = lengths.reshape(tokens.shape[0], -1)  # [batch, beams]
            texts = [
                [self._decode(beam[: int(length)]) for beam, length in zip(beams, beam_lengths, strict=True)]
                for beams, beam_lengths in zip(tokens, lengths, strict=True)
            ]
            output = np.array(texts, dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", output)]))
        return responses

    def finalize(self) -> None:
        """Nothing to release."""

    def _decode(self, tokens: np.ndarray) -> bytes:
        """UTF-8 text of one beam."""
        text = self.tokenizer.decode(tokens.tolist(), skip_special_tokens=self.skip_special_tokens)
        return str(text).encode("utf-8")
