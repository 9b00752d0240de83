"""The Argo CD examples under examples/gitops/ are consistent with the chart and the docs.

There is no Argo CD in the test cluster, so the Applications are checked here: the chart path
exists, the Helm values pass the chart's values.schema.json, and the sync options the
operations guide recommends are set. The argocd-cm patch is checked by test_argocd_health.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "examples" / "gitops"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((GITOPS / name).read_text(encoding="utf-8"))


def test_every_file_is_an_argocd_object_with_a_usage_comment() -> None:
    files = sorted(GITOPS.glob("*.yaml"))
    assert [f.name for f in files] == ["application-operator.yaml", "application.yaml", "argocd-cm-patch.yaml"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# ") and "kubectl " in text.split("\napiVersion:", 1)[0], path.name
        assert yaml.safe_load(text)["metadata"]["namespace"] == "argocd"


def test_resources_application_uses_server_side_apply_and_no_self_heal() -> None:
    app = _load("application.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    sync = app["spec"]["syncPolicy"]
    assert "ServerSideApply=true" in sync["syncOptions"]
    assert sync["automated"]["selfHeal"] is False  # see docs/operations.md: TTL + self-heal re-runs jobs


def test_operator_application_points_at_the_chart_with_valid_values() -> None:
    app = _load("application-operator.yaml")
    source = app["spec"]["source"]
    assert (REPO / source["path"] / "Chart.yaml").is_file()
    schema = json.loads((REPO / source["path"] / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((REPO / source["path"] / "values.yaml").read_text(encoding="utf-8"))
    values = _merge(defaults, source["helm"]["valuesObject"])
    jsonschema.Draft7Validator(schema).validate(values)
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge recursively, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_merge_catches_a_typo_in_application_values() -> None:
    schema = json.loads((REPO / "charts" / "kubetune" / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((REPO / "charts" / "kubetune" / "values.yaml").read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(_merge(defaults, {"metrics": {"servicemonitor": {}}})))
    assert errors and "servicemonitor" in errors[0].message
