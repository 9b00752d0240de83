"""docs/operations.md documents every condition type and reason the operator sets, as the code does.

Reasons are an API (alerts, dashboards and the Argo CD health checks match on them), so each
constant in ``kubetune.reconcile.reasons`` (FineTuneJob) and ``kubetune.reconcile.serving_reasons``
(ModelDeployment) must have a row in the matching troubleshooting table, whose meaning is the
constant's one-sentence ``#:`` comment. A new or reworded reason fails here until the guide says
the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
from kubetune.reconcile import reasons, serving_reasons

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
CONSTANT = re.compile(r'^#: (?P<doc>.+)\n(?P<name>[A-Z_]+): Final = "(?P<value>[A-Za-z]+)"$', re.MULTILINE)


def _table(section: str) -> dict[str, str]:
    """First-column value -> second-column text of the table under a ``###`` heading."""
    text = GUIDE.read_text(encoding="utf-8")
    body = text.split(f"\n### {section}\n", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in body.splitlines():
        match = re.match(r"^\| `(?P<key>[A-Za-z]+)` \| (?P<meaning>[^|]+) \|", line)
        if match:
            rows[match["key"]] = match["meaning"].strip()
    return rows


def _plain(text: str) -> str:
    return text.replace("`", "")


def _split(module: ModuleType) -> tuple[dict[str, str], dict[str, str]]:
    """(condition types, reasons) of a module, each value -> its comment.

    Condition types are the constants above the module's ``# Reasons.`` line; the rest are reasons.
    """
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    head, _, tail = source.partition("\n# Reasons.")
    types = {m["value"]: m["doc"] for m in CONSTANT.finditer(head)}
    assert set(types) == set(module.CONDITION_TYPES), "every condition type needs a #: comment"
    return types, {m["value"]: m["doc"] for m in CONSTANT.finditer(tail)}


@pytest.mark.parametrize(
    ("module", "kind"), [(reasons, "FineTuneJob"), (serving_reasons, "ModelDeployment")], ids=["ftj", "mdep"]
)
def test_every_condition_type_and_reason_is_documented_as_in_the_code(module: ModuleType, kind: str) -> None:
    types, reasons_ = _split(module)
    assert len(reasons_) >= 15
    for section, expected in ((f"{kind} condition types", types), (f"{kind} reasons", reasons_)):
        table = _table(section)
        missing = sorted(set(expected) - set(table))
        assert missing == [], f"docs/operations.md, '{section}' lacks {missing}"
        stale = sorted(set(table) - set(expected))
        assert stale == [], f"docs/operations.md, '{section}' documents {stale}, which the code no longer has"
        differ = {k: (table[k], v) for k, v in expected.items() if _plain(table[k]) != _plain(v)}
        assert differ == {}, f"'{section}': (guide, code) meanings differ: {differ}"


def test_table_parser_sees_the_rows() -> None:
    assert _table("FineTuneJob reasons")["Queued"].startswith("A Job waits for Kueue")
    assert "Ready" in _table("ModelDeployment condition types")
