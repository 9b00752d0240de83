"""The Python steps of the TensorRT-LLM ensemble (preprocessing, postprocessing) on a real tritonserver.

The ``tensorrt_llm`` model itself needs a GPU and the TensorRT-LLM backend, which CI does not have;
its configuration is checked against Triton's schema in the unit tests. The two Python models
around it run anywhere, so here they are loaded from a generated tensorrtllm repository and driven
with the tensors the ensemble would pass them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.serve import repository, server, tensorrtllm

pytestmark = pytest.mark.e2e

MAX_INPUT_LEN = 48
MAX_OUTPUT_LEN = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubetune_trainer.tiny import build_tiny_model

    corpus = ["Where is my order?", "Your order has shipped.", "Can I change my address?", "我要退款。"]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus, vocab_size=512)


@pytest.fixture(scope="module")
def steps(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An HTTP client of a tritonserver serving only preprocessing and postprocessing."""
    import tritonclient.http as httpclient

    root = tmp_path_factory.mktemp("trtllm")
    spec = v1alpha1.ServingSpec.model_validate(
        {"backend": "tensorrtllm", "engine": {"maxInputLen": MAX_INPUT_LEN, "maxOutputLen": MAX_OUTPUT_LEN}}
    )
    full = repository.build_repository(model_dir, root / "full", spec)
    python_only = root / "python-only"
    for step in (tensorrtllm.PREPROCESSING, tensorrtllm.POSTPROCESSING):
        shutil.copytree(full / step, python_only / step)
    with server.start_server(python_only, log_path=root / "tritonserver.log") as running:
        triton = httpclient.InferenceServerClient(running.http_url.removeprefix("http://"))
        yield triton
        triton.close()


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _input(name: str, array: np.ndarray, data_type: str) -> Any:
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput(name, list(array.shape), data_type)
    tensor.set_data_from_numpy(array)
    return tensor


def _chat_ids(tokenizer: Any, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _preprocess(steps: Any, prompts: list[str], max_tokens: int | None = None) -> Any:
    inputs = [_input("QUERY", np.array([[p.encode()] for p in prompts], dtype=np.object_), "BYTES")]
    if max_tokens is not None:
        inputs.append(_input("REQUEST_OUTPUT_LEN", np.full((len(prompts), 1), max_tokens, dtype=np.int32), "INT32"))
    return steps.infer(tensorrtllm.PREPROCESSING, inputs)


def test_preprocessing_applies_the_chat_template_and_fills_the_ids(steps: Any, tokenizer: Any) -> None:
    result = _preprocess(steps, ["Where is my order?"], 5)
    expected = _chat_ids(tokenizer, "Where is my order?")
    assert result.as_numpy("INPUT_ID").tolist() == [expected]
    assert result.as_numpy("REQUEST_INPUT_LEN").tolist() == [[len(expected)]]
    assert result.as_numpy("REQUEST_OUTPUT_LEN").tolist() == [[5]]
    assert result.as_numpy("OUT_END_ID").tolist() == [[tokenizer.eos_token_id]]
    assert result.as_numpy("OUT_PAD_ID").tolist() == [[tokenizer.pad_token_id]]


def test_preprocessing_pads_a_batch_and_defaults_max_tokens(steps: Any, tokenizer: Any) -> None:
    prompts = ["Hi", "Can I change my address? I moved to a new city last week."]
    result = _preprocess(steps, prompts)
    ids = [_chat_ids(tokenizer, p) for p in prompts]
    lengths = result.as_numpy("REQUEST_INPUT_LEN").reshape(-1).tolist()
    assert lengths == [len(row) for row in ids]
    padded = result.as_numpy("INPUT_ID")
    assert padded.shape == (2, max(lengths))
    assert padded[0, : lengths[0]].tolist() == ids[0]
    assert set(padded[0, lengths[0] :].tolist()) == {tokenizer.pad_token_id}
    assert result.as_numpy("REQUEST_OUTPUT_LEN").reshape(-1).tolist() == [MAX_OUTPUT_LEN, MAX_OUTPUT_LEN]


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "message"),
    [
        ("Hi", MAX_OUTPUT_LEN + 1, f"max_tokens must be between 1 and {MAX_OUTPUT_LEN}"),
        ("order " * 100, 4, f"the limit (maxInputLen) is {MAX_INPUT_LEN}"),
        (" ", 4, "text_input is empty"),
    ],
)
def test_preprocessing_rejects_bad_requests(steps: Any, prompt: str, max_tokens: int, message: str) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as failure:
        _preprocess(steps, [prompt], max_tokens)
    assert message in failure.value.message()


def test_postprocessing_decodes_each_beam_up_to_its_length(steps: Any, tokenizer: Any) -> None:
    ids = tokenizer("Your order has shipped.", add_special_tokens=False)["input_ids"]
    padded = [*ids, tokenizer.pad_token_id, tokenizer.pad_token_id]
    tokens = np.array([[padded]], dtype=np.int32)  # [batch 1, beams 1, tokens]
    lengths = np.array([[len(ids)]], dtype=np.int32)  # [batch 1, beams 1]
    result = steps.infer(
        tensorrtllm.POSTPROCESSING,
        [_input("TOKENS_BATCH", tokens, "INT32"), _input("SEQUENCE_LENGTH", lengths, "INT32")],
    )
    assert [[item.decode() for item in row] for row in result.as_numpy("OUTPUT")] == [["Your order has shipped."]]
