"""The CRDs in crds/ are exactly what the generator writes, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubetune import crdgen

CRDS = Path(__file__).parents[2] / "crds"


def test_crds_are_current() -> None:
    rendered = crdgen.render_all()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CRDS.glob("*.yaml")}
    assert set(on_disk) == set(rendered), "crds/ has stale or missing files: run `make crds`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"crds/{name} is out of date: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                out.extend(_walk(sub, f"{path}.{name}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_schemas_are_structural() -> None:
    for kind in crdgen.KINDS:
        schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"} & node.keys(), path
            assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{kind.kind}{path} has no type"
            if node.get("type") == "object" and path not in ("", ".metadata"):
                assert "properties" in node or "additionalProperties" in node, path
            if "exclusiveMinimum" in node:
                assert isinstance(node["exclusiveMinimum"], bool), f"{path}: Kubernetes wants a boolean"


def test_descriptions_and_defaults_reach_the_schema() -> None:
    schema = crdgen.openapi_schema(crdgen.KINDS[0].spec)
    r = schema["properties"]["lora"]["properties"]["r"]
    assert r["default"] == 16 and "Rank" in r["description"]
    assert schema["properties"]["training"]["default"] == {}
    assert schema["properties"]["method"]["enum"] == ["lora", "qlora", "prefix", "freeze", "full"]
    surge = crdgen.openapi_schema(crdgen.KINDS[1].spec)["properties"]["rollout"]["properties"]["maxSurge"]
    assert surge["x-kubernetes-int-or-string"] is True and "type" not in surge


def test_printer_columns_and_names() -> None:
    ftj, mdep = (crdgen.crd(k) for k in crdgen.KINDS)
    assert [c["name"] for c in ftj["spec"]["versions"][0]["additionalPrinterColumns"]][:4] == [
        "Phase",
        "Method",
        "Progress",
        "Loss",
    ]
    assert ftj["spec"]["names"]["shortNames"] == ["ftj"]
    assert mdep["spec"]["names"]["shortNames"] == ["mdep"]
    assert ftj["spec"]["names"]["categories"] == ["kubetune"]
    assert ftj["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = [c["name"] for c in mdep["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert {"Phase", "Backend", "Quantization", "Ready", "Endpoint", "Age"} <= set(columns)


def test_crd_yaml_parses() -> None:
    for text in crdgen.render_all().values():
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
