"""TensorRT-LLM engine build commands, rendered from a ModelDeployment's serving settings.

Why this module exists: the operator runs the engine build as a Kubernetes Job in the build image
(TensorRT-LLM installed, one or more GPUs) and needs its exact command line; the Job's pod has no
kubetune code it could call. So these are pure functions (no torch, no I/O) from the typed spec to
argv lists and a shell script, unit-tested flag by flag.

Two steps, following the TensorRT-LLM workflow (HF checkpoint -> TensorRT-LLM checkpoint -> engine):

1. checkpoint conversion, which is where quantization and tensor parallelism are decided:

   ========== =========================================================================================
   fp16       ``convert_checkpoint.py --dtype float16``
   int8       weight-only INT8 (W8A16), ``--use_weight_only --weight_only_precision int8`` (default), or
              SmoothQuant W8A8, ``--smoothquant 0.5 --per_token --per_channel`` (``int8_mode="smoothquant"``)
   w4a16      AWQ, ``quantize.py --qformat int4_awq --awq_block_size 128``
   fp8        ``quantize.py --qformat fp8 --kv_cache_dtype fp8`` (Ada/Hopper GPUs)
   ========== =========================================================================================

   Weight-only INT8 is the default because it needs no calibration data (SmoothQuant and the
   ``quantize.py`` formats calibrate on a dataset, by default one fetched from the Hugging Face hub,
   which an air-gapped cluster cannot reach: pass ``calib_dataset`` as a local directory there),
   keeps accuracy closest to fp16, and still halves weight memory, which is what bounds decoding.
2. ``trtllm-build`` with the batch and length limits of ``spec.engine``: ``--max_batch_size``,
   ``--max_input_len``, ``--max_seq_len`` (input + output), ``--max_num_tokens``, a paged KV cache and
   ``--gemm_plugin auto``.

The scripts live in the TensorRT-LLM source tree (``examples_dir``; ``/app/tensorrt_llm/examples`` in
NVIDIA's TensorRT-LLM release image); conversion is per model family (``model_family``).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence

from kubetune.api import v1alpha1

#: Where the TensorRT-LLM examples are in NVIDIA's TensorRT-LLM release image.
DEFAULT_EXAMPLES_DIR = "/app/tensorrt_llm/examples"
#: Families with their own ``convert_checkpoint.py`` under ``examples/models/core/``.
MODEL_FAMILIES = ("llama", "qwen", "gemma", "phi", "gpt")
INT8_MODES = ("weight_only", "smoothquant")
#: SmoothQuant migration strength (0.5 balances activation and weight outliers for most LLMs).
SMOOTHQUANT_ALPHA = 0.5
AWQ_BLOCK_SIZE = 128
CALIB_SIZE = 512


def _convert_script(examples_dir: str, model_family: str) -> str:
    """Path of the family's ``convert_checkpoint.py``."""
    if model_family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {model_family!r}; one of {', '.join(MODEL_FAMILIES)}")
    return posixpath.join(examples_dir, "models", "core", model_family, "convert_checkpoint.py")


def checkpoint_command(
    spec: v1alpha1.ServingSpec,
    model_dir: str,
    checkpoint_dir: str,
    *,
    examples_dir: str = DEFAULT_EXAMPLES_DIR,
    model_family: str = "llama",
    int8_mode: str = "weight_only",
    calib_dataset: str | None = None,
) -> list[str]:
    """The command that converts (and quantizes) the HF model into a TensorRT-LLM checkpoint.

    Args:
        spec: serving settings (``quantization``, ``engine.tensorParallelism``).
        model_dir: the merged HF model, as the build pod sees it.
        checkpoint_dir: where the TensorRT-LLM checkpoint goes.
        examples_dir: TensorRT-LLM ``examples`` directory.
        model_family: which ``convert_checkpoint.py`` to use (fp16 and int8).
        int8_mode: ``weight_only`` (W8A16, default) or ``smoothquant`` (W8A8).
        calib_dataset: calibration dataset (hub name or local directory) for SmoothQuant, AWQ, FP8.

    Returns:
        The argv list.

    Raises:
        ValueError: an unknown model family or int8 mode.
    """
    if int8_mode not in INT8_MODES:
        raise ValueError(f"unknown int8 mode {int8_mode!r}; one of {', '.join(INT8_MODES)}")
    quantization = spec.quantization
    tp = ["--tp_size", str(spec.engine.tensor_parallelism)]
    calibration = ["--calib_dataset", calib_dataset] if calib_dataset else []
    if quantization in (v1alpha1.Quantization.W4A16, v1alpha1.Quantization.FP8):
        quantize = posixpath.join(examples_dir, "quantization", "quantize.py")
        argv = ["python3", quantize, "--model_dir", model_dir, "--output_dir", checkpoint_dir, "--dtype", "float16"]
        if quantization is v1alpha1.Quantization.W4A16:
            argv += ["--qformat", "int4_awq", "--awq_block_size", str(AWQ_BLOCK_SIZE)]
        else:
            argv += ["--qformat", "fp8", "--kv_cache_dtype", "fp8"]
        return [*argv, "--calib_size", str(CALIB_SIZE), *calibration, *tp]
    convert = _convert_script(examples_dir, model_family)
    argv = ["python3", convert, "--model_dir", model_dir, "--output_dir", checkpoint_dir, "--dtype", "float16"]
    if quantization is v1alpha1.Quantization.INT8 and int8_mode == "weight_only":
        argv += ["--use_weight_only", "--weight_only_precision", "int8"]
    elif quantization is v1alpha1.Quantization.INT8:
        argv += ["--smoothquant", str(SMOOTHQUANT_ALPHA), "--per_token", "--per_channel", *calibration]
    return [*argv, *tp]


def trtllm_build_command(spec: v1alpha1.ServingSpec, checkpoint_dir: str, output_dir: str) -> list[str]:
    """The ``trtllm-build`` command that compiles the checkpoint into an engine with the spec's limits."""
    engine = spec.engine
    argv = [
        "trtllm-build",
        "--checkpoint_dir", checkpoint_dir,
        "--output_dir", output_dir,
        "--gemm_plugin", "auto",
        "--gpt_attention_plugin", "auto",
        "--kv_cache_type", "paged",
        "--remove_input_padding", "enable",
        "--context_fmha", "enable",
        "--max_batch_size", str(engine.max_batch_size),
        "--max_input_len", str(engine.max_input_len),
        "--max_seq_len", str(engine.max_input_len + engine.max_output_len),
        "--max_num_tokens", str(engine.max_num_tokens),
        "--max_beam_width", "1",
    ]  # fmt: skip
    if engine.tensor_parallelism > 1:
        argv += ["--workers", str(engine.tensor_parallelism)]
    return argv


def default_checkpoint_dir(output_dir: str) -> str:
    """Scratch directory for the intermediate checkpoint: a sibling of the engine directory."""
    return output_dir.rstrip("/") + ".checkpoint"


def engine_build_commands(
    spec: v1alpha1.ServingSpec,
    model_dir: str,
    output_dir: str,
    *,
    checkpoint_dir: str | None = None,
    examples_dir: str = DEFAULT_EXAMPLES_DIR,
    model_family: str = "llama",
    int8_mode: str = "weight_only",
    calib_dataset: str | None = None,
) -> list[list[str]]:
    """The commands that build the TensorRT-LLM engine of a ModelDeployment, in order.

    Args:
        spec: serving settings; the python backend has no engine (an empty list is returned).
        model_dir: the merged HF model, as the build pod sees it.
        output_dir: where the engine goes (``gpt_model_path`` of the ``tensorrt_llm`` model).
        checkpoint_dir: scratch for the intermediate checkpoint (default: ``<output_dir>.checkpoint``).
        examples_dir: TensorRT-LLM ``examples`` directory in the build image.
        model_family: which ``convert_checkpoint.py`` to use.
        int8_mode: ``weight_only`` (default) or ``smoothquant``, for ``quantization: int8``.
        calib_dataset: calibration dataset for SmoothQuant, AWQ and FP8.

    Returns:
        ``[checkpoint conversion argv, trtllm-build argv]``, or ``[]`` for the python backend.
    """
    if spec.backend is not v1alpha1.Backend.TENSORRTLLM:
        return []
    checkpoint = checkpoint_dir or default_checkpoint_dir(output_dir)
    return [
        checkpoint_command(
            spec,
            model_dir,
            checkpoint,
            examples_dir=examples_dir,
            model_family=model_family,
            int8_mode=int8_mode,
            calib_dataset=calib_dataset,
        ),
        trtllm_build_command(spec, checkpoint, output_dir),
    ]


def build_script(
    spec: v1alpha1.ServingSpec,
    model_dir: str,
    output_dir: str,
    *,
    checkpoint_dir: str | None = None,
    examples_dir: str = DEFAULT_EXAMPLES_DIR,
    model_family: str = "llama",
    int8_mode: str = "weight_only",
    calib_dataset: str | None = None,
    extra_commands: Sequence[Sequence[str]] = (),
) -> str:
    """A POSIX shell script running :func:`engine_build_commands`, then removing the scratch checkpoint.

    Args:
        spec: serving settings.
        model_dir: the merged HF model.
        output_dir: where the engine goes.
        checkpoint_dir: scratch for the intermediate checkpoint.
        examples_dir: TensorRT-LLM ``examples`` directory in the build image.
        model_family: which ``convert_checkpoint.py`` to use.
        int8_mode: ``weight_only`` (default) or ``smoothquant``.
        calib_dataset: calibration dataset for SmoothQuant, AWQ and FP8.
        extra_commands: commands run after the build (e.g. writing the Triton model repository).

    Returns:
        The script (for ``sh -c`` or a file); ``set -e`` stops it at the first failing command.
    """
    checkpoint = checkpoint_dir or default_checkpoint_dir(output_dir)
    commands = engine_build_commands(
        spec,
        model_dir,
        output_dir,
        checkpoint_dir=checkpoint,
        examples_dir=examples_dir,
        model_family=model_family,
        int8_mode=int8_mode,
        calib_dataset=calib_dataset,
    )
    lines = [
        "#!/bin/sh",
        f"# Generated by kubetune: {spec.backend.value} backend, quantization {spec.quantization.value}.",
        "set -eux",
    ]
    lines += [shlex.join(argv) for argv in commands]
    if commands:
        lines.append(shlex.join(["rm", "-rf", checkpoint]))
    lines += [shlex.join(list(argv)) for argv in extra_commands]
    return "\n".join(lines) + "\n"
