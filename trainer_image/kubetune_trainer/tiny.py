"""Tiny Llama-style models built from a config, for tests, the demo and CPU smoke runs.

Nothing may be downloaded from a model hub here, yet the trainer must keep its real loading
path (``AutoModelForCausalLM.from_pretrained`` on a directory). So this module *builds* a
checkpoint directory the same way a real one is laid out: a byte-level BPE tokenizer trained
on the fly (so any text, Chinese included, is encodable), a chat template, and a randomly
initialised ``LlamaForCausalLM`` saved with ``save_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: A ChatML-style template: what ``apply_chat_template`` renders for the tiny model.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>", "<unk>"]

_DEFAULT_CORPUS = [
    "Hello, how can I help you today? I want to check my order status.",
    "Your order has shipped and will arrive in 3 days. Anything else?",
    "I would like a refund for the broken item. Please send the return label.",
    "您好，请问有什么可以帮您？我想查询一下订单的物流信息。",
    "您的订单已发货，预计三天内送达。还有其他问题吗？",
    "我要退款，商品坏了。请提供退货地址。谢谢！",
    "<CN_ID> <CN_MOBILE> <EMAIL> <BANK_CARD> <IP_ADDRESS> 0123456789",
]


def build_tokenizer(corpus: Iterable[str] = (), vocab_size: int = 1024) -> object:
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer.

    Args:
        corpus: extra training text (the default corpus covers English, Chinese and placeholders).
        vocab_size: target vocabulary size.

    Returns:
        A ``PreTrainedTokenizerFast`` with pad/bos/eos tokens and :data:`CHAT_TEMPLATE`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(_DEFAULT_CORPUS) + list(corpus)
    tokenizer.train_from_iterator(texts * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    output_dir: str | Path,
    corpus: Iterable[str] = (),
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny ``LlamaForCausalLM`` checkpoint (weights, config, tokenizer) to a directory.

    Args:
        output_dir: the checkpoint directory to create.
        corpus: text the tokenizer is trained on (e.g. the dataset's responses).
        vocab_size: tokenizer vocabulary size (the model's embedding matches the tokenizer).
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads (key/value heads are the same).
        seed: torch seed for the random initialisation.

    Returns:
        The directory, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # type: ignore[attr-defined]
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # type: ignore[attr-defined]
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)  # type: ignore[attr-defined]
    return output_dir
