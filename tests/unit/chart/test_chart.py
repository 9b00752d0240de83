"""The chart's metadata, values and CRD copies, checked without Helm or a cluster.

Rendering and installing the chart is tested in tests/cluster/test_helm*.py (they need the
helm binary and the local control plane).
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kubetune"
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
VALUES_TEXT = (CHART / "values.yaml").read_text(encoding="utf-8")
VALUES = yaml.safe_load(VALUES_TEXT)


def _errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def _closed_objects(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of every object in the schema that rejects unknown keys."""
    if schema.get("additionalProperties") is False:
        yield path
    for name, sub in schema.get("properties", {}).items():
        yield from _closed_objects(sub, (*path, name))


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["version"] == project["version"]
    assert chart["apiVersion"] == "v2" and chart["name"] == "kubetune"


def test_chart_crds_are_byte_copies_of_crds_dir() -> None:
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    originals = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    assert copies.keys() == originals.keys(), "charts/kubetune/files/crds/ lacks or has extra files: run `make crds`"
    for name, data in originals.items():
        assert copies[name] == data, f"charts/kubetune/files/crds/{name} differs from crds/{name}: run `make crds`"


def test_default_values_match_the_schema() -> None:
    assert _errors(VALUES) == []


def test_every_object_in_the_schema_rejects_typos() -> None:
    closed = list(_closed_objects(SCHEMA))
    assert {(), ("crds",), ("image",), ("operator",), ("metrics", "serviceMonitor")} <= set(closed)
    for path in closed:
        values = copy.deepcopy(VALUES)
        node = values
        for key in path:
            node = node.setdefault(key, {})
        node["typoKey"] = True
        assert any("typoKey" in e for e in _errors(values)), f"{'.'.join(path) or '<root>'} accepts unknown keys"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("crds", "install"), "yes", "is not of type 'boolean'"),
        (("image", "digest"), "latest", "does not match"),
        (("image", "pullPolicy"), "Sometimes", "is not one of"),
        (("watchNamespaces",), ["ml", "ml"], "non-unique"),
        (("watchNamespaces",), ["ML_Team"], "does not match"),
        (("metrics", "port"), 70000, "is greater than the maximum"),
        (("metrics", "serviceMonitor", "interval"), "30 seconds", "does not match"),
        (("operator", "logLevel"), "TRACE", "is not one of"),
        (("resources", "limits", "memory"), "lots", "is not valid under any of the given schemas"),
        (("replicaCount",), -1, "is less than the minimum"),
    ],
)
def test_schema_rejects_bad_values(path: tuple[str, ...], value: Any, expected: str) -> None:
    values = copy.deepcopy(VALUES)
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = _errors(values)
    assert any(expected in e for e in errors), errors


def _documented_paths(
    schema: dict[str, Any], values: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Keys set in values.yaml whose schema node has a description (chart-defined keys)."""
    for name, sub in schema.get("properties", {}).items():
        if name not in values:
            continue
        if "description" in sub:
            yield (*path, name)
        if isinstance(values[name], dict):
            yield from _documented_paths(sub, values[name], (*path, name))


def _line_of_key(path: tuple[str, ...]) -> int:
    """Index of the line in values.yaml that sets ``path`` (keys found in order, by indentation)."""
    lines = VALUES_TEXT.splitlines()
    start = 0
    for depth, key in enumerate(path):
        pattern = re.compile(rf"^{' ' * (2 * depth)}{re.escape(key)}:")
        start = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
    return start


def test_every_key_has_a_comment_above_it() -> None:
    lines = VALUES_TEXT.splitlines()
    undocumented = []
    for path in _documented_paths(SCHEMA, VALUES):
        index = _line_of_key(path)
        above = lines[index - 1].strip() if index else ""
        if not above.startswith("#"):
            undocumented.append(".".join(path))
    assert undocumented == []


def _examples() -> Iterator[tuple[tuple[str, ...], Any]]:
    """Commented-out examples: a key line followed by ``# key:`` (and ``#   ...``) at its indentation."""
    lines = VALUES_TEXT.splitlines()
    parents: list[str] = []
    for index, line in enumerate(lines):
        key = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if not key:
            continue
        depth = len(key.group(1)) // 2
        parents = [*parents[:depth], key.group(2)]
        indent = key.group(1)
        follow = lines[index + 1] if index + 1 < len(lines) else ""
        if not follow.startswith(f"{indent}# {key.group(2)}:"):
            continue
        block = []
        for comment in lines[index + 1 :]:
            text = comment[len(indent) + 2 :]
            if not comment.startswith(f"{indent}# ") or (block and not text.startswith(" ")):
                break
            block.append(text)
        yield tuple(parents), yaml.safe_load("\n".join(block))[key.group(2)]


def test_commented_examples_are_valid_values() -> None:
    examples = dict(_examples())
    assert ("image", "digest") in examples and ("watchNamespaces",) in examples and len(examples) >= 10
    for path, example in examples.items():
        values = copy.deepcopy(VALUES)
        node = values
        for key in path[:-1]:
            node = node[key]
        assert node[path[-1]] != example, f"the example of {'.'.join(path)} should differ from the default"
        node[path[-1]] = example
        assert _errors(values) == [], f"the example of {'.'.join(path)} is invalid: {example!r}"
