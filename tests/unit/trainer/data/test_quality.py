from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.data import quality, records

GOOD_RESPONSE = "您好，您的订单已于3月15日发货，预计三天内送达，请留意物流信息。"


def triple(context: str = "我的订单到哪了？", response: str = GOOD_RESPONSE, followup: str = "") -> records.Record:
    parsed = records.parse_record(
        {"context": context, "response": response, "followup": followup}, v1alpha1.DatasetFormat.TRIPLE
    )
    assert isinstance(parsed, records.Record)
    return parsed


def verdict(record: records.Record, **spec: Any) -> quality.Verdict:
    return quality.QualityFilter(v1alpha1.QualityFilterSpec(**spec)).assess(record)


def test_a_normal_dialogue_scores_one() -> None:
    assert verdict(triple()) == quality.Verdict(1.0, None)
    assert verdict(triple("Where is my order?", "It shipped on March 15 and arrives in 3 days.")).score == 1.0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (triple(response=""), "empty"),
        (triple(response="  \n "), "empty"),
        (triple(context="   "), "empty"),
        (triple(response="好"), "tooShort"),
        (triple(response="好" * 5000), "tooLong"),
        (triple(context="我的订单到哪了？", response="我的订单到哪了？"), "echo"),
        (triple(context="Where is MY order?", response="where is my   order?"), "echo"),
        (triple(response="哈哈哈哈哈哈哈哈哈哈哈哈"), "repetitive"),
        (triple(response="好的好的好的好的好的好的"), "repetitive"),
        (triple(response="okokokokokokokok"), "repetitive"),
        (triple(response="？？？！！！###@@@***"), "nonText"),
        (triple(response="好的\x00\x01\x02\x07\x07"), "nonText"),
        (triple(response="订单已发货\ufffd\ufffd"), "nonText"),
        (triple(context="!!!!????####", response=GOOD_RESPONSE), "nonText"),
    ],
)
def test_each_heuristic_drops_with_its_reason(record: records.Record, reason: str) -> None:
    result = verdict(record)
    assert result.reason == reason
    assert result.score < 0.7


def test_length_limits_come_from_the_spec() -> None:
    assert verdict(triple(response="好的"), min_chars=3).reason == "tooShort"
    assert verdict(triple(response="好的"), min_chars=2).reason is None
    assert verdict(triple(response="好的谢谢您"), max_chars=4).reason == "tooLong"


def test_the_threshold_decides_soft_scores() -> None:
    record = triple(response="哈哈哈哈，好的，已经帮您处理")  # partly repetitive
    score = verdict(record).score
    assert 0 < score < 1
    assert verdict(record, threshold=score).reason is None
    assert verdict(record, threshold=min(1.0, score + 0.01)).reason == "repetitive"


def test_digits_and_spaces_do_not_count_as_repetition() -> None:
    assert quality.repetition_score("金额1000000元，订单0000000001") == 1.0
    assert quality.repetition_score("a          b") == 1.0
    assert quality.repetition_score("哈哈哈哈哈哈哈哈") == 0.0
    assert 0 < quality.repetition_score("哈哈哈哈哈哈，真的吗？太好了吧") < 1


def test_symbol_score() -> None:
    assert quality.symbol_score("Hello, world!") == 1.0
    assert quality.symbol_score("<CN_MOBILE> 已记录") == 1.0
    assert quality.symbol_score("!!!???") == 0.0
    assert quality.symbol_score("tab\tand newline\n are fine") == 1.0
    assert quality.symbol_score("bell\x07") == 0.0
    assert quality.symbol_score("😀😀 nice") < 1.0


def test_text_features_handle_empty_texts_and_rare_characters() -> None:
    features = quality.text_features(["", "𠀀𠀀𠀀𠀀 ok", ""])
    assert features.length.tolist() == [0, 7, 0]
    assert features.symbols.tolist() == [0, 0, 0]  # CJK extension B is a letter
    assert features.repeated.tolist() == [0, 4, 0]
    assert quality.text_features([]).length.size == 0


def test_filter_keeps_good_records_in_order_and_counts_reasons() -> None:
    items = [triple(), triple(response=""), triple(followup="谢谢"), triple(response="好" * 20), triple()]
    kept, dropped = quality.QualityFilter(v1alpha1.QualityFilterSpec()).filter(items)
    assert kept == [items[0], items[2], items[4]]
    assert dropped == Counter({"empty": 1, "repetitive": 1})


def test_chat_checks_every_assistant_turn() -> None:
    parsed = records.parse_record(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello, how can I help?"},
                {"role": "user", "content": "order"},
                {"role": "assistant", "content": "order"},
            ]
        },
        v1alpha1.DatasetFormat.CHAT,
    )
    assert isinstance(parsed, records.Record)
    assert verdict(parsed).reason == "echo"


# --- the optional classifier ---------------------------------------------------------------------


def build_classifier(path: Path, good_bias: float, id2label: dict[int, str] | None = None) -> Path:
    """A tiny BERT classifier whose head bias fixes P(good) (the weights are random but small)."""
    import torch
    from kubetune_trainer import tiny
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer: Any = tiny.build_tokenizer(vocab_size=300)
    labels = id2label or {0: "bad", 1: "good"}
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        pad_token_id=tokenizer.pad_token_id,
        id2label=labels,
        label2id={name: index for index, name in labels.items()},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    good = quality.good_label_index(labels, 2)
    with torch.no_grad():
        model.classifier.bias.zero_()
        model.classifier.bias[good] = good_bias
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def confident_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("cls") / "confident", good_bias=3.0)


@pytest.fixture(scope="module")
def doubtful_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("cls") / "doubtful", good_bias=-3.0, id2label={0: "good", 1: "bad"})


def test_classifier_scores_vary_with_the_text(confident_classifier: Path) -> None:
    classifier = quality.QualityClassifier(str(confident_classifier), batch_size=2)
    scores = classifier.score([("hi", "hello"), ("您好", GOOD_RESPONSE), ("a", "b" * 1000)])
    assert all(0.9 < score < 1.0 for score in scores)
    assert len(set(scores)) == 3


def test_records_under_the_threshold_are_dropped_by_the_classifier(
    confident_classifier: Path, doubtful_classifier: Path
) -> None:
    items = [triple(), triple(response=""), triple(followup="谢谢")]
    spec = v1alpha1.QualityFilterSpec()
    kept, dropped = quality.QualityFilter(spec, quality.QualityClassifier(str(confident_classifier))).filter(items)
    assert (kept, dropped) == ([items[0], items[2]], Counter({"empty": 1}))
    kept, dropped = quality.QualityFilter(spec, quality.QualityClassifier(str(doubtful_classifier))).filter(items)
    assert (kept, dropped) == ([], Counter({"empty": 1, "classifier": 2}))


def test_good_label_index() -> None:
    assert quality.good_label_index({0: "LABEL_0", 1: "LABEL_1"}, 2) == 1
    assert quality.good_label_index({0: "High", 1: "low"}, 2) == 0
    assert quality.good_label_index({0: "x", 1: "y", 2: "Acceptable"}, 3) == 2


def test_prompt_and_response_use_the_last_assistant_turn() -> None:
    assert quality.prompt_and_response(triple("Q?", "A.", "thanks")) == ("Q?", "A.")
