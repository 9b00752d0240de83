from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.data import pii, reader, synthetic


def test_same_seed_same_records() -> None:
    assert synthetic.generate(300, seed=5) == synthetic.generate(300, seed=5)
    assert synthetic.generate(300, seed=5) != synthetic.generate(300, seed=6)


def test_records_are_valid_triples_with_known_intents() -> None:
    items = synthetic.generate(2000, seed=1)
    result = reader.parse_lines([json.dumps(item, ensure_ascii=False) for item in items], v1alpha1.DatasetFormat.TRIPLE)
    assert len(result.records) == 2000 and result.malformed == 0
    intents = Counter(item["intent"] for item in items)
    assert set(intents) == set(synthetic.INTENT_WEIGHTS)
    assert intents.most_common(1)[0][0] == "order_status"
    english = sum(item["context"].isascii() for item in items)
    assert 0.1 < english / len(items) < 0.3


def test_the_planted_mix() -> None:
    labelled = synthetic.generate_labelled(5000, seed=2)
    kinds = Counter(item.kind for item in labelled)
    assert 150 < kinds["exactDuplicate"] < 250
    assert 150 < kinds["nearDuplicate"] < 250
    assert 150 < kinds["junk"] < 250
    entities = Counter(entity for item in labelled for entity, _ in item.pii)
    assert set(entities) == {entity.value for entity in v1alpha1.PIIEntity}
    assert sum(bool(item.lookalikes) for item in labelled) > 1000


def test_planted_values_are_what_they_claim() -> None:
    rng = random.Random(3)
    redactor = pii.Redactor()
    for _ in range(200):
        assert pii.is_cn_id(synthetic.make_cn_id(rng))
        bad_id = synthetic.make_cn_id(rng, valid=False)
        assert not pii.is_cn_id(bad_id) and not pii.is_bank_card(bad_id)
        assert redactor.redact(synthetic.make_card(rng)) == "<BANK_CARD>"
        bad_card = synthetic.make_card(rng, valid=False)
        assert redactor.redact(bad_card) == bad_card
        assert redactor.redact(synthetic.make_mobile(rng)) == "<CN_MOBILE>"
        assert redactor.redact(synthetic.make_email(rng)) == "<EMAIL>"
        assert redactor.redact(synthetic.make_ipv4(rng)) == "<IP_ADDRESS>"


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "data.jsonl"
    assert synthetic.main(["--records", "40", "--output", str(out), "--seed", "4"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == synthetic.generate(40, seed=4)
    assert "wrote 40 records" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(["--records", "0", "--output", str(out)])
    assert exit_info.value.code == 2
