"""docs/api-reference.md is current, complete, well-formed and says what the CRDs enforce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubetune import crdgen, docgen

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api-reference.md"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _tables() -> dict[str, dict[str, list[str]]]:
    """Parse the page: section heading -> field name -> its table cells."""
    tables: dict[str, dict[str, list[str]]] = {}
    heading = None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            heading = line[4:]
            tables[heading] = {}
        elif heading and line.startswith("| `"):
            cells = [c.strip() for c in UNESCAPED_PIPE.split(line)[1:-1]]
            tables[heading][cells[0].strip("`")] = cells
    return tables


def test_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == docgen.render(), (
        "docs/api-reference.md is stale: run `python -m kubetune.docgen`"
    )


def test_every_field_of_every_object_is_documented() -> None:
    tables = _tables()
    expected = {}
    for kind in crdgen.KINDS:
        root = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            for section in docgen.sections(f"{kind.kind}.{part}", root["properties"][part]):
                expected[section.path] = set(section.schema["properties"])
    assert {heading: set(fields) for heading, fields in tables.items()} == expected
    assert "FineTuneJob.status.conditions[]" in tables  # objects inside lists get a section too


def test_rows_have_five_cells_despite_pipes_in_patterns() -> None:
    for heading, fields in _tables().items():
        for name, cells in fields.items():
            assert len(cells) == 5, f"{heading}.{name}: {cells}"
    uri = _tables()["FineTuneJob.spec.baseModel"]["uri"]
    assert "\\|pvc://" in uri[4] and uri[4].startswith("pattern `^(hf://")


def test_types_defaults_and_validation() -> None:
    tables = _tables()
    lora = tables["FineTuneJob.spec.lora"]
    assert lora["r"][1:3] == ["integer", "`16`"] and lora["r"][4] == "≥ 1; ≤ 1024"
    assert lora["dropout"][4] == "≥ 0; < 1"
    assert lora["targetModules"][1:3] == ["[]string", '`["q_proj", "v_proj"]`']
    assert tables["FineTuneJob.spec.dataset.cleaning.dedup"]["similarityThreshold"][4] == "> 0; ≤ 1"
    spec = tables["FineTuneJob.spec"]
    assert spec["baseModel"][1] == "[object](#finetunejobspecbasemodel)"
    assert spec["baseModel"][4] == "required; immutable"
    assert spec["method"][4] == "one of `lora`, `qlora`, `prefix`, `freeze`, `full`; immutable"
    assert spec["training"][2] == "`{}`" and spec["training"][4] == ""  # its rule is listed in its section
    assert tables["FineTuneJob.spec.resources"]["nodeSelector"][1] == "map[string]string"
    assert tables["FineTuneJob.status.dataReport"]["dropped"][1] == "map[string]integer"
    assert tables["FineTuneJob.status"]["conditions"][1] == "[][object](#finetunejobstatusconditions)"
    assert tables["FineTuneJob.status"]["conditions"][4] == "unique by `type`"
    assert tables["FineTuneJob.status"]["startTime"][1] == "string (date-time)"
    assert tables["ModelDeployment.spec.rollout"]["maxSurge"][1] == "integer or string"
    pii = tables["FineTuneJob.spec.dataset.cleaning.piiRedaction"]["entities"][4]
    assert pii.startswith("min items 1; items one of `cnIdCard`")


def test_object_rules_are_listed_under_their_section() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    training = text.split("### FineTuneJob.spec.training\n", 1)[1].split("### ", 1)[0]
    assert "- spec.training.minLearningRate must not exceed spec.training.learningRate (CEL: `" in training
    assert "| metadata | metadata.name must be at most 50 characters" in text


def test_every_link_points_at_a_heading() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    anchors = {docgen.anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, links - anchors


@pytest.mark.parametrize(
    ("heading", "expected"),
    [("FineTuneJob.spec.baseModel", "finetunejobspecbasemodel"), ("A b_c-D[]{}", "a-b_c-d")],
)
def test_anchor(heading: str, expected: str) -> None:
    assert docgen.anchor(heading) == expected


def test_main_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "api.md"
    assert docgen.main(["--check", "--output", str(out)]) == 1  # missing
    assert "out of date" in capsys.readouterr().err
    assert docgen.main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == docgen.render()
    assert docgen.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("`16`", "`8`"), encoding="utf-8")
    assert docgen.main(["--check", "--output", str(out)]) == 1  # stale
