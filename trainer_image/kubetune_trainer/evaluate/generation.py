"""Greedy responses to the validation prompts, the input of BLEU and ROUGE-L.

Decoding is greedy (no sampling) so metrics are reproducible run to run, and prompts are
rendered with the tokenizer's chat template exactly as at training time, ending with the
assistant header (``add_generation_prompt``), so the model continues as the agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

#: A prompt: chat messages ``{"role", "content"}`` up to (not including) the response.
Messages = list[dict[str, str]]


@torch.no_grad()
def generate_responses(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], *, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Generate one response per prompt, greedily.

    Args:
        model: a causal LM (or peft model) in eval mode.
        tokenizer: its tokenizer, with a chat template.
        prompts: the conversations to answer.
        max_new_tokens: cap on generated tokens (``spec.evaluation.maxNewTokens``).
        batch_size: prompts per ``generate`` call.

    Returns:
        The decoded responses, special tokens removed, whitespace stripped.
    """
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
    try:
        responses: list[str] = []
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            responses += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return responses
    finally:
        tokenizer.padding_side = padding_side
