from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.cli import TrainerError
from kubetune_trainer.data import pipeline, reader, synthetic

SPEC = v1alpha1.DatasetSpec(uri="pvc://data/dialogues.jsonl")


@pytest.fixture(scope="module")
def labelled() -> list[synthetic.LabelledRecord]:
    return synthetic.generate_labelled(3000, seed=11)


def read_labelled(items: list[synthetic.LabelledRecord]) -> reader.ReadResult:
    return reader.parse_lines([json.dumps(item.record, ensure_ascii=False) for item in items], SPEC.format)


def test_clean_removes_what_the_generator_planted(labelled: list[synthetic.LabelledRecord]) -> None:
    read = read_labelled(labelled)
    result = pipeline.clean(read.records, SPEC, seed=1)
    kept = {record.line for record in result.kept}
    for line, item in enumerate(labelled, start=1):
        if item.kind in ("junk", "exactDuplicate", "nearDuplicate"):
            assert line not in kept, (item.kind, item.record)
    originals = sum(item.kind == "original" for item in labelled)
    assert len(kept) >= 0.98 * originals  # only accidental duplicates among the originals go
    planted_exact = sum(item.kind == "exactDuplicate" for item in labelled)
    planted_near = sum(item.kind == "nearDuplicate" for item in labelled)
    assert result.dropped["exactDuplicate"] >= planted_exact
    assert result.dropped["nearDuplicate"] >= 0.95 * planted_near
    assert sum(result.dropped[r] for r in ("empty", "echo", "repetitive", "nonText")) == sum(
        item.kind == "junk" for item in labelled
    )


def test_clean_redacts_all_planted_pii_and_no_lookalike(labelled: list[synthetic.LabelledRecord]) -> None:
    read = read_labelled(labelled)
    result = pipeline.clean(read.records, SPEC, seed=1)
    texts = {record.line: " ".join(segment.text for segment in record.segments).lower() for record in read.records}
    planted = [(line, entity, value) for line, item in enumerate(labelled, 1) for entity, value in item.pii]
    assert len(planted) > 500
    assert [p for p in planted if p[2].lower() in texts[p[0]]] == []
    lookalikes = [(line, value) for line, item in enumerate(labelled, 1) for value in item.lookalikes]
    assert len(lookalikes) > 500
    assert [p for p in lookalikes if p[1].lower() not in texts[p[0]]] == []
    occurrences = sum(
        json.dumps(item.record, ensure_ascii=False).lower().count(value.lower())
        for item in labelled
        for _, value in item.pii
    )  # an echoed context carries its PII twice; an exact duplicate may be upper-cased
    assert sum(result.redactions.values()) == occurrences


def test_clean_order_and_split(labelled: list[synthetic.LabelledRecord]) -> None:
    read = read_labelled(labelled)
    spec = SPEC.model_copy(update={"validation_split": 0.2})
    spec.cleaning.balance.max_per_intent = 150
    result = pipeline.clean(read.records, spec, seed=1)
    assert max(result.intents_after.values()) == 150
    assert result.dropped["maxPerIntent"] == sum(result.intents_before.values()) - sum(result.intents_after.values())
    assert len(result.train) + len(result.validation) == len(result.kept)
    assert abs(len(result.validation) - 0.2 * len(result.kept)) <= 1
    lines = [record.line for record in result.kept]
    assert lines == sorted(lines)
    assert set(result.seconds) == {"redact", "quality", "dedup"}


def test_steps_can_be_switched_off(labelled: list[synthetic.LabelledRecord]) -> None:
    read = read_labelled(labelled)
    cleaning = v1alpha1.CleaningSpec.model_validate(
        {
            "piiRedaction": {"enabled": False},
            "qualityFilter": {"enabled": False},
            "dedup": {"enabled": False},
            "balance": {"enabled": False},
        }
    )
    result = pipeline.clean(read.records, SPEC.model_copy(update={"cleaning": cleaning}), seed=1)
    assert len(result.kept) == len(labelled)
    assert not result.dropped and not result.redactions


def test_run_prepare_writes_the_output_directory(tmp_path: Path, labelled: list[synthetic.LabelledRecord]) -> None:
    source = synthetic.write_jsonl([item.record for item in labelled[:500]], tmp_path / "in.jsonl")
    source.write_text(source.read_text(encoding="utf-8") + "not json\n", encoding="utf-8")
    report = pipeline.run_prepare(str(source), SPEC, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "cleaned.jsonl",
        "prepare.json",
        "report.json",
        "train.jsonl",
        "validation.jsonl",
    ]
    assert json.loads((out / "report.json").read_text()) == report.to_k8s()
    assert v1alpha1.DataReport.model_validate(report.to_k8s()) == report
    assert report.records_in == 501 and report.malformed == 1
    assert report.records_out == report.train_records + report.validation_records  # type: ignore[operator]
    assert report.records_in == report.records_out + report.malformed + sum(report.dropped.values())  # type: ignore[operator]
    assert report.warnings[0].startswith("line 501: invalid JSON")
    digest = hashlib.sha256((out / "train.jsonl").read_bytes() + (out / "validation.jsonl").read_bytes())
    assert report.digest == f"sha256:{digest.hexdigest()}"
    cleaned = [json.loads(line) for line in (out / "cleaned.jsonl").read_text().splitlines()]
    assert len(cleaned) == report.records_out
    assert set(cleaned[0]) == {"context", "response", "followup", "intent"}
    details = json.loads((out / "prepare.json").read_text())
    assert details["malformedLines"] == [{"line": 501, "reason": details["malformedLines"][0]["reason"]}]
    assert details["tokenized"] is None


def test_run_prepare_is_deterministic(tmp_path: Path, labelled: list[synthetic.LabelledRecord]) -> None:
    source = synthetic.write_jsonl([item.record for item in labelled[:300]], tmp_path / "in.jsonl")
    first = pipeline.run_prepare(str(source), SPEC, tmp_path / "a", progress=False)
    second = pipeline.run_prepare(str(source), SPEC, tmp_path / "b", progress=False)
    assert first == second
    assert (tmp_path / "a" / "cleaned.jsonl").read_bytes() == (tmp_path / "b" / "cleaned.jsonl").read_bytes()


def test_a_failed_run_leaves_the_previous_output_in_place(tmp_path: Path) -> None:
    good = synthetic.write_jsonl(synthetic.generate(50, seed=1), tmp_path / "good.jsonl")
    pipeline.run_prepare(str(good), SPEC, tmp_path / "out", progress=False)
    before = (tmp_path / "out" / "report.json").read_bytes()
    junk = synthetic.write_jsonl([{"context": "a", "response": ""}], tmp_path / "junk.jsonl")
    with pytest.raises(TrainerError, match=r"no record left after cleaning 1 records \(dropped: \{'empty': 1\}\)"):
        pipeline.run_prepare(str(junk), SPEC, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "report.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_dataset_is_a_trainer_error(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="dataset not found"):
        pipeline.run_prepare(str(tmp_path / "none.jsonl"), SPEC, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_classifier_is_a_trainer_error(tmp_path: Path) -> None:
    source = synthetic.write_jsonl(synthetic.generate(20, seed=1), tmp_path / "in.jsonl")
    spec = SPEC.model_copy(deep=True)
    spec.cleaning.quality_filter.classifier_uri = "pvc://models/quality"
    with pytest.raises(TrainerError, match=f"quality classifier directory not found: {tmp_path}/models/quality"):
        pipeline.run_prepare(str(source), spec, tmp_path / "out", pvc_root=str(tmp_path), progress=False)


def test_gc_is_restored(tmp_path: Path) -> None:
    import gc

    source = synthetic.write_jsonl(synthetic.generate(20, seed=1), tmp_path / "in.jsonl")
    assert gc.isenabled()
    pipeline.run_prepare(str(source), SPEC, tmp_path / "out", progress=False)
    assert gc.isenabled()


def test_extra_string_fields_are_redacted_too(tmp_path: Path) -> None:
    item = {
        "context": "我的订单到哪了？",
        "response": "您的订单已发货，预计三天内送达。",
        "intent": "order_status",
        "customer": "13812345678",
        "meta": {"phones": ["13812345678", 5], "note": None},
    }
    source = synthetic.write_jsonl([item], tmp_path / "in.jsonl")
    report = pipeline.run_prepare(str(source), SPEC, tmp_path / "out", progress=False)
    cleaned = json.loads((tmp_path / "out" / "cleaned.jsonl").read_text(encoding="utf-8"))
    assert cleaned["customer"] == "<CN_MOBILE>"
    assert cleaned["meta"] == {"phones": ["<CN_MOBILE>", 5], "note": None}
    assert report.redactions == {"cnMobile": 2}
    details = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert details["source"] == str(source)
