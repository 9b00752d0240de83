"""Operator settings from the environment and the command line."""

from __future__ import annotations

import argparse

import pytest
from kubetune import settings
from kubetune.handlers import app


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    loaded = settings.from_env({})
    assert loaded.trainer_image == settings.DEFAULT_TRAINER_IMAGE
    assert loaded.all_namespaces and loaded.metrics_port == 8080 and not loaded.standalone
    assert loaded.lease_namespace == "default"


def test_environment() -> None:
    loaded = settings.from_env(
        {
            "KUBETUNE_TRAINER_IMAGE": "registry.local/trainer:2",
            "KUBETUNE_NAMESPACES": "ml-a, ml-b,",
            "KUBETUNE_STANDALONE": "true",
            "KUBETUNE_METRICS_PORT": "9090",
            "KUBETUNE_WORKERS": "4",
            "KUBETUNE_LEASE_DURATION": "30",
            "KUBETUNE_PREPARE_MEMORY": "16Gi",
            "POD_NAMESPACE": "kubetune-system",
            "POD_NAME": "kubetune-abc",
        }
    )
    assert loaded.trainer_image == "registry.local/trainer:2"
    assert loaded.namespaces == ("ml-a", "ml-b") and not loaded.all_namespaces
    assert loaded.standalone and loaded.metrics_port == 9090 and loaded.workers == 4
    assert loaded.lease_duration == 30.0 and loaded.prepare_memory == "16Gi"
    assert loaded.lease_namespace == "kubetune-system"
    assert loaded.identity.startswith("kubetune-abc_")


@pytest.mark.parametrize(("name", "value"), [("KUBETUNE_METRICS_PORT", "http"), ("KUBETUNE_STANDALONE", "maybe")])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(settings.SettingsError, match=name):
        settings.from_env({name: value})


def test_flags_override_the_environment() -> None:
    env = {"KUBETUNE_NAMESPACES": "from-env", "KUBETUNE_TRAINER_IMAGE": "env:1"}
    merged = app.settings_from(
        parse("-n", "a", "-n", "b", "--standalone", "--metrics-port", "0", "--log-level", "debug"), env
    )
    assert merged.namespaces == ("a", "b") and merged.standalone and merged.metrics_port == 0
    assert merged.trainer_image == "env:1" and merged.log_level == "DEBUG"
    assert app.settings_from(parse("--all-namespaces"), env).all_namespaces
    assert app.settings_from(parse(), env).namespaces == ("from-env",)


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("-n", "a", "--all-namespaces")
