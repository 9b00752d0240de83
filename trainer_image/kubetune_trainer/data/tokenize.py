"""Tokenization, label masking and packing: the hand-over from the prepare step to train and evaluate.

Each record is rendered with the base model's own chat template (so training sees exactly the
format the served model will be prompted with) and tokenized. Only assistant turns are
trained on: label ids are the token ids inside an assistant turn - its content and the
template's end-of-turn token (e.g. ``<|im_end|>``), so the model learns to stop - and -100
everywhere else (system and user text, role headers, trailing whitespace). A trailing user turn
(the ``followup`` of the triple format) is not rendered: nothing after the last trained response
can change the loss. Samples longer than ``training.maxSeqLength`` are cut to that length;
those left with no trainable token are dropped (counted in ``meta.json``).

Packing (``training.packing``): samples are packed into sequences of at most ``maxSeqLength``
tokens by best-fit decreasing (longest sample first, into the fullest sequence that still has
room), which fills sequences almost completely without splitting any sample. Attention does not
cross samples: every sequence carries ``position_ids`` that restart at 0 for each sample, and
the collator in :mod:`kubetune_trainer.data.packed` passes them without an ``attention_mask``;
transformers (5.x) then builds a block-diagonal causal mask from the position restarts
(``masking_utils.find_packed_sequence_indices``, for eager/SDPA/flex attention) or uses
variable-length kernels (flash-attention 2). This requires ``use_cache=False`` in training (the
default with gradient checkpointing); with a KV cache transformers ignores the restarts. Labels
never cross samples either: the first token of a sample is never an assistant token.

On-disk format (``<prepared_dir>/tokenized/``), read with :func:`load_tokenized`:

* ``meta.json`` - ``formatVersion`` (1), ``maxSeqLength``, ``packing``, ``padTokenId``,
  ``eosTokenId``, ``tokenizer``, ``chatTemplate``, and per split ``sequences``, ``samples``,
  ``tokens``, ``trainableTokens``, ``truncated``, ``droppedNoLabels``.
* ``train/`` and ``validation/`` - four numpy arrays (``.npy``, memory-mapped on load):
  ``input_ids``, ``labels`` and ``position_ids`` (int32, all sequences concatenated) and
  ``offsets`` (int64, ``sequences + 1`` boundaries into the flat arrays).

This format loads in milliseconds with numpy alone (no ``datasets``/Arrow dependency), and any
sequence is a zero-copy slice. The cleaned records of each split (``train.jsonl``,
``validation.jsonl`` in chat layout, next to ``tokenized/``) are read with
:func:`load_cleaned_records`, e.g. by the evaluation step's generation metrics.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kubetune.api import v1alpha1

from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import packed, reader, records

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TOKENIZED_DIR = "tokenized"
SPLITS = ("train", "validation")
IGNORE_INDEX = -100
_ARRAYS = ("input_ids", "labels", "position_ids")
_BATCH = 1024

#: Used when the base model's tokenizer has none (a base, not instruction-tuned, model): ChatML.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# --- loading the tokenizer ------------------------------------------------------------------------


def load_tokenizer(location: str, pvc_root: str = v1alpha1.PVC_MOUNT_ROOT) -> Any:
    """Load the base model's tokenizer.

    Args:
        location: a local directory, ``pvc://claim/path``, ``hf://org/name@revision`` (needs hub
            access from the pod) or an fsspec URL of a directory (e.g. ``s3://bucket/model``).
        pvc_root: where claims are mounted.

    Returns:
        A transformers tokenizer with a chat template (ChatML if the model has none).

    Raises:
        TrainerError: if no tokenizer can be loaded from the location.
    """
    from transformers import AutoTokenizer

    resolved = reader.resolve_location(location, pvc_root)
    kwargs: dict[str, Any] = {}
    if resolved.startswith("hf://"):
        parsed = v1alpha1.parse_uri(resolved)
        resolved, kwargs["revision"] = parsed.authority, parsed.revision
    elif "://" in resolved:
        resolved = _download_tokenizer(resolved)
    elif not Path(resolved).is_dir():
        raise TrainerError(f"tokenizer directory not found: {resolved}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError) as err:
        raise TrainerError(f"cannot load a tokenizer from {location}: {err}") from err
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer at %s has no chat template; using ChatML", location)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def _download_tokenizer(url: str) -> str:
    """Copy the tokenizer files of a remote model directory into a temporary directory."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    target = tempfile.mkdtemp(prefix="kubetune-tokenizer-")
    wanted = ("tokenizer", "special_tokens_map", "vocab", "merges", "config.json", "chat_template")
    for path in fs.ls(root, detail=False):
        name = os.path.basename(path)
        if name.startswith(wanted):
            fs.get(path, os.path.join(target, name))
    return target


# --- rendering and label masking ------------------------------------------------------------------


@dataclass(slots=True)
class Rendered:
    """A conversation rendered by the chat template, with the character spans to train on."""

    text: str
    spans: list[tuple[int, int]]


def trained_turns(turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The messages to render: everything up to and including the last assistant turn."""
    last = max((i for i, (role, _) in enumerate(turns) if role == records.ASSISTANT), default=-1)
    return [{"role": role, "content": text} for role, text in turns[: last + 1]]


def _render_many(tokenizer: Any, conversations: list[list[dict[str, str]]], generation_prompt: bool) -> list[str]:
    """Render several conversations in one call (the template's per-call overhead is paid once)."""
    if not conversations:
        return []
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=generation_prompt)
    return [text if isinstance(text, str) else str(text) for text in texts]


def render(tokenizer: Any, turns: Sequence[tuple[str, str]]) -> Rendered:
    """Render one conversation and find the character span of every assistant turn (see :func:`render_many`)."""
    return render_many(tokenizer, [turns])[0]


def render_many(tokenizer: Any, conversations: Sequence[Sequence[tuple[str, str]]]) -> list[Rendered]:
    """Render conversations and find the character span of every assistant turn.

    The span of assistant turn ``i`` starts where the template's generation prompt for
    ``messages[:i]`` ends and stops at the end of ``messages[:i + 1]`` rendered (trailing
    whitespace excluded), so it covers the content and the end-of-turn token. Templates whose
    renders are not prefixes of each other fall back to locating the content text.

    Args:
        tokenizer: a tokenizer with a chat template.
        conversations: each a list of ``(role, text)`` pairs.

    Returns:
        The rendered texts and their assistant spans.
    """
    all_messages = [trained_turns(turns) for turns in conversations]
    fulls = _render_many(tokenizer, all_messages, False)
    # The prefixes every span needs: (conversation, assistant index), rendered in two batched calls.
    wanted = [
        (number, index)
        for number, messages in enumerate(all_messages)
        for index, message in enumerate(messages)
        if message["role"] == records.ASSISTANT
    ]
    prompt_of = dict(
        zip(
            [key for key in wanted if key[1] > 0],
            _render_many(tokenizer, [all_messages[n][:i] for n, i in wanted if i > 0], True),
            strict=True,
        )
    )
    partial = [(n, i) for n, i in wanted if i < len(all_messages[n]) - 1]
    upto_of = dict(
        zip(partial, _render_many(tokenizer, [all_messages[n][: i + 1] for n, i in partial], False), strict=True)
    )
    out = [Rendered(full, []) for full in fulls]
    cursors = [0] * len(fulls)
    for number, index in wanted:
        full = fulls[number]
        prompt, upto = prompt_of.get((number, index)), upto_of.get((number, index), full)
        span = _span(tokenizer, full, prompt, upto, all_messages[number][index]["content"], cursors[number])
        if span is not None:
            out[number].spans.append(span)
            cursors[number] = max(cursors[number], span[1])
    return out


def _span(
    tokenizer: Any, full: str, prompt: str | None, upto: str, content: str, cursor: int
) -> tuple[int, int] | None:
    """The character span of one assistant turn in ``full`` (``prompt`` is None for a first turn)."""
    if prompt is not None and full.startswith(upto) and upto.startswith(prompt):
        start, end = len(prompt), len(upto.rstrip())
    else:
        start = full.find(content, cursor)
        if start < 0:
            return None
        end = start + len(content)
        eos = getattr(tokenizer, "eos_token", None)
        if eos and full.startswith(eos, end):
            end += len(eos)
    return (start, end) if end > start else None


def _encode_by_pieces(tokenizer: Any, rendered: Rendered) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizers without offsets: tokenize the text between span boundaries piece by piece."""
    ids: list[int] = []
    labels: list[int] = []
    cursor = 0
    for begin, end in [*rendered.spans, (len(rendered.text), len(rendered.text))]:
        for piece, trained in ((rendered.text[cursor:begin], False), (rendered.text[begin:end], True)):
            if piece:
                piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids.extend(piece_ids)
                labels.extend(piece_ids if trained else [IGNORE_INDEX] * len(piece_ids))
        cursor = end
    return np.asarray(ids, dtype=np.int32), np.asarray(labels, dtype=np.int32)


# --- encoding a split -----------------------------------------------------------------------------


@dataclass(slots=True)
class SplitStats:
    """Token counts of one split, written to ``meta.json``."""

    sequences: int = 0
    samples: int = 0
    tokens: int = 0
    trainable_tokens: int = 0
    truncated: int = 0
    dropped_no_labels: int = 0

    def to_json(self) -> dict[str, int]:
        """CamelCase keys, like the rest of the project's JSON."""
        return {_camel(key): value for key, value in asdict(self).items()}


@dataclass(slots=True)
class Samples:
    """Tokenized samples of one split before packing."""

    input_ids: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def encode_records(
    tokenizer: Any, items: Sequence[records.Record], max_seq_length: int, *, progress: bool = False, desc: str = ""
) -> tuple[Samples, SplitStats]:
    """Render, tokenize and label-mask records.

    Args:
        tokenizer: tokenizer with a chat template.
        items: cleaned records.
        max_seq_length: longer samples are truncated to this many tokens.
        progress: show a progress bar on stderr.
        desc: progress bar label.

    Returns:
        The samples (int32 arrays) and their statistics.
    """
    from tqdm import tqdm

    samples, stats = Samples(), SplitStats()
    with tqdm(total=len(items), desc=desc or "tokenize", unit="rec", file=sys.stderr, disable=not progress) as bar:
        for begin in range(0, len(items), _BATCH):
            batch = render_many(tokenizer, [record.turns() for record in items[begin : begin + _BATCH]])
            for ids, labels in _encode_batch(tokenizer, batch):
                _add_sample(samples, stats, ids, labels, max_seq_length)
            bar.update(len(batch))
    return samples, stats


def _encode_batch(tokenizer: Any, batch: list[Rendered]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        for rendered in batch:
            yield _encode_by_pieces(tokenizer, rendered)
        return
    # The Rust tokenizer directly: same ids as tokenizer(...), without building Python offset lists.
    for rendered, encoding in zip(
        batch, backend.encode_batch([r.text for r in batch], add_special_tokens=False), strict=True
    ):
        ids = np.asarray(encoding.ids, dtype=np.int32)
        yield ids, _labels(ids, encoding, rendered)


def _labels(ids: np.ndarray, encoding: Any, rendered: Rendered) -> np.ndarray:
    """Token ids inside the assistant spans, -100 elsewhere (spans mapped to tokens by the encoding)."""
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    for begin, end in rendered.spans:
        first = encoding.char_to_token(begin)
        after = len(ids) if end >= len(rendered.text) else encoding.char_to_token(end)
        if first is None or after is None:  # a character without a token (normalised away): use offsets
            starts = np.array([start for start, _ in encoding.offsets], dtype=np.int64)
            inside = (starts >= begin) & (starts < end)
            labels[inside] = ids[inside]
        else:
            labels[first:after] = ids[first:after]
    return labels


def _add_sample(samples: Samples, stats: SplitStats, ids: np.ndarray, labels: np.ndarray, max_len: int) -> None:
    if len(ids) > max_len:
        ids, labels = ids[:max_len], labels[:max_len]
        stats.truncated += 1
    trainable = int((labels != IGNORE_INDEX).sum())
    if trainable == 0:
        stats.dropped_no_labels += 1
        return
    samples.input_ids.append(ids)
    samples.labels.append(labels)
    stats.samples += 1
    stats.tokens += len(ids)
    stats.trainable_tokens += trainable


# --- packing and writing --------------------------------------------------------------------------


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group samples into sequences of at most ``capacity`` tokens (best-fit decreasing).

    Args:
        lengths: token count of each sample (each at most ``capacity``).
        capacity: ``maxSeqLength``.

    Returns:
        The sample indices of each sequence, in input order within a sequence; sequences are
        ordered by their first sample.
    """
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        need = lengths[index]
        slot = bisect.bisect_left(free, (need, -1))
        if slot < len(free):
            room, bin_index = free.pop(slot)
        else:
            room, bin_index = capacity, len(bins)
            bins.append([])
        bins[bin_index].append(index)
        bisect.insort(free, (room - need, bin_index))
    ordered = [sorted(members) for members in bins]
    return sorted(ordered, key=lambda members: members[0])


def write_split(directory: Path, samples: Samples, groups: list[list[int]]) -> int:
    """Write one split's arrays.

    Args:
        directory: the split directory to create.
        samples: tokenized samples.
        groups: sample indices per sequence (see :func:`pack`); one sample each without packing.

    Returns:
        The number of sequences written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ids = [samples.input_ids[i] for members in groups for i in members]
    labels = [samples.labels[i] for members in groups for i in members]
    positions = [np.arange(len(sample), dtype=np.int32) for sample in ids]
    lengths = [sum(len(samples.input_ids[i]) for i in members) for members in groups]
    offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
    empty = np.zeros(0, dtype=np.int32)
    for name, parts in (("input_ids", ids), ("labels", labels), ("position_ids", positions)):
        np.save(directory / f"{name}.npy", np.concatenate(parts) if parts else empty)
    np.save(directory / "offsets.npy", offsets.astype(np.int64))
    return len(groups)


def tokenize_splits(
    tokenizer: Any,
    splits: Mapping[str, Sequence[records.Record]],
    training: v1alpha1.TrainingSpec,
    output_dir: Path,
    *,
    tokenizer_name: str = "",
    progress: bool = False,
) -> dict[str, Any]:
    """Tokenize, pack and write every split, then ``meta.json``.

    Args:
        tokenizer: tokenizer with a chat template.
        splits: records per split name (``train``, ``validation``).
        training: ``maxSeqLength`` and ``packing``.
        output_dir: the ``tokenized`` directory to fill (inside an atomic directory).
        tokenizer_name: where the tokenizer came from, for ``meta.json``.
        progress: show progress bars.

    Returns:
        The content of ``meta.json``.
    """
    meta: dict[str, Any] = {
        "formatVersion": FORMAT_VERSION,
        "maxSeqLength": training.max_seq_length,
        "packing": training.packing,
        "padTokenId": _pad_token_id(tokenizer),
        "eosTokenId": tokenizer.eos_token_id,
        "tokenizer": tokenizer_name,
        "chatTemplate": tokenizer.chat_template,
        "splits": {},
    }
    for name, items in splits.items():
        samples, stats = encode_records(tokenizer, items, training.max_seq_length, progress=progress, desc=name)
        lengths = [len(sample) for sample in samples.input_ids]
        groups = pack(lengths, training.max_seq_length) if training.packing else [[i] for i in range(len(lengths))]
        stats.sequences = write_split(output_dir / name, samples, groups)
        meta["splits"][name] = stats.to_json()
    (output_dir / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return meta


def _pad_token_id(tokenizer: Any) -> int:
    """The pad id the collator uses: the tokenizer's pad token, else its EOS token, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


# --- reading, for the train and evaluate steps ----------------------------------------------------


def load_tokenized(prepared_dir: str | Path) -> tuple[packed.PackedDataset, packed.PackedDataset]:
    """Open the tokenized train and validation splits written by the prepare step.

    Args:
        prepared_dir: ``TrainerPaths.prepared_dir`` (the directory holding ``tokenized/``).

    Returns:
        ``(train, validation)`` map-style datasets; ``dataset[i]`` is a dict of int64 tensors
        ``input_ids``, ``labels``, ``position_ids``. Batch them with
        ``dataset.collator()`` (a :class:`~kubetune_trainer.data.packed.PackedCollator`).

    Raises:
        TrainerError: if the directory holds no tokenized data of a known format version.
    """
    root = Path(prepared_dir) / TOKENIZED_DIR
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise TrainerError(f"no tokenized data in {prepared_dir} (run prepare with a tokenizer first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("formatVersion") != FORMAT_VERSION:
        raise TrainerError(f"{meta_path}: format version {meta.get('formatVersion')}, expected {FORMAT_VERSION}")
    datasets = []
    for name in SPLITS:
        arrays = {key: np.load(root / name / f"{key}.npy", mmap_mode="r") for key in (*_ARRAYS, "offsets")}
        datasets.append(packed.PackedDataset(arrays, pad_token_id=int(meta["padTokenId"]), meta=meta))
    return datasets[0], datasets[1]


@dataclass(frozen=True, slots=True)
class CleanedRecord:
    """A cleaned record of a split, as the evaluation step uses it.

    Attributes:
        messages: the whole conversation (``role``/``content`` dicts).
        prompt: the messages before the last assistant turn (what the model is given).
        reference: the last assistant turn (what it should answer).
        intent: the record's intent, if any.
    """

    messages: list[dict[str, str]]
    prompt: list[dict[str, str]]
    reference: str
    intent: str | None


def load_cleaned_records(prepared_dir: str | Path, split: str = "validation") -> list[CleanedRecord]:
    """Read the cleaned records of a split (written before tokenization, in chat layout).

    Args:
        prepared_dir: the prepared data directory.
        split: ``train`` or ``validation``.

    Returns:
        The records, in the split's order.

    Raises:
        TrainerError: if the split file is missing.
    """
    path = Path(prepared_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise TrainerError(f"cleaned {split} records not found: {path}")
    out = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            obj = json.loads(line)
            messages = obj["messages"]
            last = max(i for i, message in enumerate(messages) if message["role"] == records.ASSISTANT)
            out.append(CleanedRecord(messages, messages[:last], messages[last]["content"], obj.get("intent")))
    return out
