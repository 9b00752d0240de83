"""Loading the base model and turning it into what a method trains.

Every recipe loads its base model here, through ``AutoModelForCausalLM.from_pretrained`` on a
directory: the tiny models of the tests and a real 8B checkpoint go down the same path. The
method-specific surgery (a LoRA or prefix adapter from peft, freezing all but the last layers)
also lives here so recipes only choose what to call. Upstream references:
https://huggingface.co/docs/peft/package_reference/lora and
https://huggingface.co/docs/peft/package_reference/prefix_tuning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from kubetune.api import v1alpha1
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from kubetune_trainer.cli import TrainerError

log = logging.getLogger(__name__)

_DTYPES = {
    v1alpha1.Precision.BF16: torch.bfloat16,
    v1alpha1.Precision.FP16: torch.float16,
    v1alpha1.Precision.FP32: torch.float32,
}


def torch_dtype(precision: v1alpha1.Precision) -> torch.dtype:
    """The torch dtype of a precision."""
    return _DTYPES[precision]


def effective_precision(precision: v1alpha1.Precision) -> v1alpha1.Precision:
    """The precision that can actually run here.

    On CPU, fp16 mixed precision is not supported by the trainer and falls back to fp32; bf16
    runs (through CPU autocast), slowly on CPUs without native bf16 instructions.
    """
    if precision == v1alpha1.Precision.FP16 and not torch.cuda.is_available():
        log.warning("fp16 needs a GPU; training in fp32 on CPU instead")
        return v1alpha1.Precision.FP32
    return precision


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch before building anything random (adapter weights, dropout).

    The ``Trainer`` seeds again when it starts, but adapters are initialised before it exists;
    without this, two runs of the same spec would start from different LoRA matrices.
    """
    from transformers import set_seed

    set_seed(seed)


def check_base_model_dir(path: str | Path) -> Path:
    """Fail early, with a clear message, when the base model directory is not a checkpoint.

    Raises:
        TrainerError: if ``path`` has no ``config.json``.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise TrainerError(f"base model not found: {path} has no config.json (expected a Hugging Face checkpoint)")
    return path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a checkpoint; give it a pad token if it has none (the EOS token)."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    path: str | Path,
    *,
    dtype: torch.dtype,
    quantization_config: Any = None,
    device_map: Any = None,
) -> PreTrainedModel:
    """Load a causal LM from a checkpoint directory.

    Args:
        path: the checkpoint directory (``config.json`` and weights).
        dtype: the dtype the weights are loaded in.
        quantization_config: a ``BitsAndBytesConfig`` for QLoRA.
        device_map: where to place the weights (QLoRA loads straight onto the GPU).

    Returns:
        The model, in train mode, with the KV cache off (training never uses it).
    """
    path = check_base_model_dir(path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, quantization_config=quantization_config, device_map=device_map
    )
    model.config.use_cache = False
    return model


def lora_config(spec: v1alpha1.FineTuneJobSpec) -> Any:
    """Peft ``LoraConfig`` from ``spec.lora`` (defaults when omitted)."""
    from peft import LoraConfig, TaskType

    lora = spec.effective_lora()
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias.value,
    )


def prefix_config(spec: v1alpha1.FineTuneJobSpec) -> Any:
    """Peft ``PrefixTuningConfig`` from ``spec.prefix`` (defaults when omitted)."""
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.effective_prefix().num_virtual_tokens
    )


def add_adapter(model: PreTrainedModel, peft_config: Any) -> Any:
    """Wrap a model with a peft adapter; only the adapter's parameters stay trainable.

    Raises:
        TrainerError: if the adapter does not fit the model (e.g. a target module that does not exist).
    """
    from peft import get_peft_model

    try:
        peft_model = get_peft_model(model, peft_config)
    except ValueError as err:
        raise TrainerError(f"cannot attach the adapter to this model: {err}") from err
    log_trainable(peft_model)
    return peft_model


def freeze_all_but_last_layers(model: PreTrainedModel, trainable_layers: int) -> None:
    """Train only the last ``trainable_layers`` decoder layers, the final norm and the LM head.

    With tied input/output embeddings the input embedding trains too (it *is* the LM head).

    Raises:
        TrainerError: if the model has fewer decoder layers than asked.
    """
    layers = _decoder_layers(model)
    if trainable_layers > len(layers):
        raise TrainerError(
            f"spec.freeze.trainableLayers is {trainable_layers} but the model has only {len(layers)} decoder layers"
        )
    model.requires_grad_(False)
    trainable = [*layers[len(layers) - trainable_layers :], model.get_output_embeddings()]
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        trainable.append(norm)
    for module in trainable:
        module.requires_grad_(True)
    log_trainable(model)


def _decoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise TrainerError(f"cannot find the decoder layers of {type(model).__name__} to freeze")
    return layers


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (ZeRO-3 partitions report their full size)."""
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    trainable = sum(n for n, grad in sizes if grad)
    total = sum(n for n, _ in sizes)
    return trainable, total


def log_trainable(model: torch.nn.Module) -> None:
    """Log how many parameters train, a quick sanity check in every run's log."""
    trainable, total = count_parameters(model)
    log.info("trainable parameters: %s of %s (%.4f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
