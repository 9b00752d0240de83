"""LoRA training throughput on one GPU: kubetune's recipe (packed) against plain transformers + peft (padded).

Run: ``python bench/train_gpu.py --steps 20`` on a machine with one H100 (about 3 minutes, most of
it building the model). It builds a Llama model with Llama-3-8B shapes from its config, directly
on the GPU with random bf16 weights (nothing is downloaded), and trains the same LoRA adapter
(``spec.lora`` defaults: r 16, alpha 32, q_proj/v_proj) twice, in the same process:

* ``kubetune``: the train step's own code path - the prepare step's best-fit packing into
  ``--seq-len`` token rows (``data.tokenize.pack``, ``data.packed.PackedDataset`` and its collator),
  ``recipes._model.add_adapter``, ``recipes._trainer.training_arguments`` and ``build_trainer``;
* ``baseline``: ``transformers.Trainer`` + ``peft.get_peft_model`` on the same samples, one sample
  per row, padded to the longest in the batch by ``DataCollatorForSeq2Seq``.

Both use bf16, gradient checkpointing and the same micro-batch capacity: ``--pack-rows`` rows of
at most ``--seq-len`` tokens (the baseline pads each batch to its longest sample instead). The
samples are synthetic dialogue turns with a long-tailed length distribution (most short, a few
long), the shape that makes padding expensive.

Reported per run: useful (non-padding) tokens per second, the share of padding computed, the step
time, MFU and peak GPU memory. MFU counts model FLOPs per useful token: 4N for the frozen matmuls
(forward and input-gradient backward; frozen weights get no weight gradient), 6 per LoRA
parameter, and 12·L·d·c for attention (forward 4·L·d·c, backward twice that), c being the mean
causal context of a token within its own sample; recomputation by gradient checkpointing is not
counted. Peak: ``--peak-tflops`` (default 989, H100 SXM dense bf16).

``--tiny`` runs the same comparison on the CPU with a 2-layer model in seconds (a smoke check of
the script, not a benchmark). Record GPU results in docs/benchmarks.md under "Training on GPU".
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from kubetune.api import v1alpha1
from kubetune_trainer.data import packed, tokenize
from kubetune_trainer.recipes import _model, _trainer
from kubetune_trainer.tiny import build_tokenizer
from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainerCallback, TrainingArguments

LLAMA3_8B: dict[str, Any] = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}
TINY: dict[str, Any] = {
    **LLAMA3_8B,
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
PAD_ID = 0
FIRST_TOKEN_ID = 16  # synthetic ids stay clear of the pad and special tokens


@dataclass
class Result:
    name: str
    useful_tokens_per_s: float
    padding: float
    step_seconds: float
    mfu: float
    peak_gib: float


def synthetic_samples(count: int, seq_len: int, vocab: int, seed: int) -> list[dict[str, list[int]]]:
    """Dialogue-like samples: lognormal lengths (median ~ seq_len/6), prompt third masked."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(seq_len / 6), 0.7, count).astype(int), 16, seq_len)
    samples = []
    for length in lengths:
        ids = rng.integers(FIRST_TOKEN_ID, vocab, int(length)).tolist()
        prompt = int(length) // 3
        samples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "attention_mask": [1] * len(ids)})
    return samples


def packed_dataset(samples: list[dict[str, list[int]]], seq_len: int) -> packed.PackedDataset:
    """The samples packed as the prepare step packs them (best-fit decreasing, per-sample positions)."""
    groups = tokenize.pack([len(s["input_ids"]) for s in samples], seq_len)
    order = [i for group in groups for i in group]
    flat = {
        "input_ids": np.concatenate([samples[i]["input_ids"] for i in order]).astype(np.int32),
        "labels": np.concatenate([samples[i]["labels"] for i in order]).astype(np.int32),
        "position_ids": np.concatenate([np.arange(len(samples[i]["input_ids"])) for i in order]).astype(np.int32),
    }
    lengths = [sum(len(samples[i]["input_ids"]) for i in group) for group in groups]
    flat["offsets"] = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return packed.PackedDataset(flat, pad_token_id=PAD_ID, meta={"packing": True})


def useful_flops_per_token(model: Any, samples: list[dict[str, list[int]]], lora_params: int) -> float:
    """Model FLOPs per non-padding token (see the module docstring)."""
    config = model.config
    embedding = config.vocab_size * config.hidden_size
    frozen_matmul = sum(p.numel() for p in model.parameters() if not p.requires_grad) - embedding
    lengths = np.array([len(s["input_ids"]) for s in samples], dtype=np.float64)
    mean_context = float((lengths * (lengths + 1) / 2).sum() / lengths.sum())
    attention = 12 * config.num_hidden_layers * config.hidden_size * mean_context
    return 4 * frozen_matmul + 6 * lora_params + attention


class CountingCollator:
    """Wraps a collator to count the tokens it hands out: all of them, and those that are not padding."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.computed = 0
        self.useful = 0

    def __call__(self, rows: Any) -> Any:
        batch = self.inner(rows)
        self.computed += batch["input_ids"].numel()
        self.useful += int((batch["input_ids"] != PAD_ID).sum())
        return batch

    @property
    def padding(self) -> float:
        return 1 - self.useful / self.computed if self.computed else float("nan")


class StepTimer(TrainerCallback):
    """Wall time and non-padding tokens of the steps after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None

    def _mark(self, state: Any) -> tuple[float, int]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if state.global_step == self.warmup:
            self.start = self._mark(state)
        elif state.global_step > self.warmup:
            self.end = self._mark(state)


def lora_spec() -> v1alpha1.FineTuneJobSpec:
    return v1alpha1.FineTuneJobSpec.model_validate(
        {"baseModel": {"uri": "pvc://models/llama"}, "dataset": {"uri": "pvc://data/d.jsonl"},
         "output": {"uri": "pvc://out/bench"}, "method": "lora"}
    )  # fmt: skip


def run_kubetune(model: Any, tokenizer: Any, samples: list[dict[str, list[int]]], opts: argparse.Namespace) -> Any:
    """Train with the recipe's own pieces; returns (timer, collator, peft model)."""
    config = v1alpha1.TrainerConfig.model_validate(
        {
            "spec": {
                **lora_spec().to_k8s(),
                "training": {
                    "perDeviceBatchSize": opts.pack_rows,
                    "gradientAccumulationSteps": 1,
                    "maxSeqLength": opts.seq_len,
                    "precision": opts.precision,
                    "gradientCheckpointing": True,
                    "checkpointSteps": 10**6,
                    "loggingSteps": 10**6,
                },
            },
            "paths": {"dataset": "-", "baseModel": "-", "workDir": opts.work_dir},
            "maxSteps": opts.warmup + opts.steps,
        }
    )
    peft_model = _model.add_adapter(model, _model.lora_config(config.spec))
    args = _trainer.training_arguments(
        config, precision=v1alpha1.Precision(opts.precision), gradient_checkpointing=True
    )
    collator = CountingCollator(packed.PackedCollator(PAD_ID))
    trainer = _trainer.build_trainer(
        model=peft_model,
        args=args,
        train_dataset=packed_dataset(samples, opts.seq_len),
        collator=collator,
        tokenizer=tokenizer,
        spec=config.spec,
        options=_trainer.RunOptions(),
    )
    return train_timed(trainer, opts), collator, peft_model


def run_baseline(model: Any, tokenizer: Any, samples: list[dict[str, list[int]]], opts: argparse.Namespace) -> Any:
    """Plain transformers + peft, one padded sample per row; returns (timer, collator, peft model)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq

    lora = lora_spec().effective_lora()
    peft_model = get_peft_model(
        model,
        LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                   target_modules=list(lora.target_modules)),
    )  # fmt: skip
    args = TrainingArguments(
        output_dir=opts.work_dir,
        per_device_train_batch_size=opts.baseline_batch,
        max_steps=opts.warmup + opts.steps,
        learning_rate=1e-4,
        bf16=opts.precision == "bf16",
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="no",
        logging_steps=10**6,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not torch.cuda.is_available(),
    )
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100))
    trainer = Trainer(model=peft_model, args=args, train_dataset=samples, data_collator=collator)
    return train_timed(trainer, opts), collator, peft_model


def train_timed(trainer: Any, opts: argparse.Namespace) -> StepTimer:
    timer = StepTimer(opts.warmup)
    trainer.add_callback(timer)
    trainer.train()
    return timer


def measure(name: str, runner: Any, model: Any, tokenizer: Any, samples: list[dict[str, Any]], opts: Any) -> Result:
    """Run one variant and free its adapter, leaving the base model as it was."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    timer, collator, peft_model = runner(model, tokenizer, samples, opts)
    if timer.start is None or timer.end is None:
        raise SystemExit("not enough steps to time: use --steps 1 or more")
    seconds = timer.end[0] - timer.start[0]
    tokens = timer.end[1] - timer.start[1]
    lora_params = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    flops = useful_flops_per_token(peft_model, samples, lora_params)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    peft_model.unload()  # back to the bare base model for the next variant
    gc.collect()
    rate = tokens / seconds
    return Result(name, rate, collator.padding, seconds / opts.steps, rate * flops / opts.peak, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per packed row (and max sample length)")
    parser.add_argument("--pack-rows", type=int, default=4, help="packed rows per micro-batch (kubetune)")
    parser.add_argument("--baseline-batch", type=int, help="samples per micro-batch (baseline; default: --pack-rows)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    parser.add_argument("--tiny", action="store_true", help="2-layer model on CPU: a smoke check of this script")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    opts = parser.parse_args()
    opts.baseline_batch = opts.baseline_batch or opts.pack_rows
    if opts.tiny:
        opts.seq_len, opts.steps, opts.warmup = 128, min(opts.steps, 3), 1
    elif not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (or --tiny)")
    opts.precision = "bf16" if torch.cuda.is_available() else "fp32"
    opts.peak = opts.peak_tflops * 1e12

    shapes = TINY if opts.tiny else LLAMA3_8B
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**shapes), dtype=_model.torch_dtype(opts.precision))
    model.config.use_cache = False
    built = time.perf_counter() - started
    tokenizer = build_tokenizer(vocab_size=256)
    tokenizer.pad_token_id, tokenizer.padding_side = PAD_ID, "right"
    samples = synthetic_samples(
        (opts.warmup + opts.steps) * max(opts.baseline_batch, 8 * opts.pack_rows), opts.seq_len, shapes["vocab_size"], 0
    )

    results = []
    with tempfile.TemporaryDirectory() as work:
        opts.work_dir = work
        results.append(measure("kubetune", run_kubetune, model, tokenizer, samples, opts))
        results.append(measure("baseline", run_baseline, model, tokenizer, samples, opts))
    report(results, opts, device, built, sum(p.numel() for p in model.parameters()))


def report(results: list[Result], opts: Any, device: str, built: float, params: int) -> None:
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    size = f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"
    print(
        f"\nLoRA r=16 (q_proj, v_proj) on a {size}-parameter Llama, {name}, {opts.precision}, gradient checkpointing,"
    )
    print(f"{opts.steps} timed steps after {opts.warmup} warm-up steps; model built in {built:.0f}s\n")
    print("| run | packing | micro-batch | useful tokens/s | padding | step (s) | MFU | peak memory (GiB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        rows = opts.pack_rows if r.name == "kubetune" else opts.baseline_batch
        batch = f"{rows} x {'' if r.name == 'kubetune' else '<='}{opts.seq_len} tokens"
        packing = "yes" if r.name == "kubetune" else "no (padded)"
        print(f"| {r.name} | {packing} | {batch} | {r.useful_tokens_per_s:,.0f} | {100 * r.padding:.0f}% | "
              f"{r.step_seconds:.3f} | {100 * r.mfu:.1f}% | {r.peak_gib:.1f} |")  # fmt: skip
    speedup = results[0].useful_tokens_per_s / results[1].useful_tokens_per_s
    print(f"\nkubetune / baseline useful-token throughput: {speedup:.2f}x")
    if opts.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))


if __name__ == "__main__":
    main()
