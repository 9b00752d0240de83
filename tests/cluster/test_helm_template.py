"""The chart rendered by the real helm (offline): lint, CRDs, security settings, names, RBAC modes.

These tests need the helm binary (``make tools``) but no running cluster; installing the chart
into the local control plane is tested in test_helm.py.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune import settings

from tests.support.helm import CHART, Helm, HelmError, find_helm

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "kubetune-system"


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(binary=find_helm(), kubeconfig=REPO / ".cluster" / "kubeconfig")


def render(helm: Helm, tmp_path: Path, values: dict[str, Any] | None = None, release: str = "rel") -> list[dict]:
    return helm.template(release, NAMESPACE, values, tmp_path)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def operator_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's own ClusterRole (not the aggregated user roles)."""
    roles = [r for r in by_kind(objects, "ClusterRole") if "aggregate-to-view" not in str(r["metadata"]["labels"])]
    roles = [r for r in roles if "aggregate-to-edit" not in str(r["metadata"]["labels"])]
    assert len(roles) == 1, [r["metadata"]["name"] for r in roles]
    return roles[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The operator container's plain (non-fieldRef) environment."""
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


@pytest.mark.parametrize(
    "values",
    [None, {"watchNamespaces": ["ml-a", "ml-b"], "replicaCount": 2, "metrics": {"serviceMonitor": {"enabled": True}}}],
    ids=["defaults", "namespaced-ha-monitored"],
)
def test_lint_passes(helm: Helm, tmp_path: Path, values: dict[str, Any] | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", helm.kube_version, "--namespace", NAMESPACE]
    result = helm.run(*args, *helm.values_args(values, tmp_path))
    assert "0 chart(s) failed" in result.stdout


def test_default_objects(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",  # the operator's
            "ClusterRole",  # <fullname>-edit, aggregated into admin and edit
            "ClusterRole",  # <fullname>-view, aggregated into view
            "ClusterRoleBinding",
            "Role",  # leader election, in the release namespace
            "RoleBinding",
            "Service",
            "Deployment",
        ]
    )
    for obj in objects:
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]


def crd_documents(helm: Helm, tmp_path: Path, values: dict[str, Any] | None = None) -> list[str]:
    """The CRD documents of a render, as text (without helm's "# Source" line)."""
    source = "# Source: kubetune/templates/crds.yaml\n"
    text = helm.template_text("rel", NAMESPACE, values, tmp_path)
    return [doc.removeprefix(source) for doc in text.split("---\n") if doc.startswith(source)]


def test_crds_are_rendered_byte_for_byte_with_the_keep_policy(helm: Helm, tmp_path: Path) -> None:
    originals = [p.read_text(encoding="utf-8") for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert len(originals) == 2
    keep = "  annotations:\n    helm.sh/resource-policy: keep\n"
    expected = [text.replace("  annotations:\n", keep, 1) for text in originals]
    assert all(keep in text for text in expected)
    assert crd_documents(helm, tmp_path) == expected
    assert crd_documents(helm, tmp_path, {"crds": {"keep": False}}) == originals
    assert crd_documents(helm, tmp_path, {"crds": {"install": False}}) == []


def test_operator_pod_is_restricted_and_bounded(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, tmp_path)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    main = container(objects)
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(main["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(main["resources"]["requests"]) and "memory" in main["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]


def test_probes_and_ports_point_at_the_operator_endpoints(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"metrics": {"port": 9440}})
    main = container(objects)
    assert main["ports"] == [{"name": "http", "containerPort": 9440, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert env(objects)["KUBETUNE_METRICS_PORT"] == "9440"
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9440, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]


def test_metrics_service_and_service_monitor_are_optional(helm: Helm, tmp_path: Path) -> None:
    assert by_kind(render(helm, tmp_path), "ServiceMonitor") == []
    monitored = render(helm, tmp_path, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "p"}}}})
    monitor = one(monitored, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "p"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(monitored, "Service")["metadata"]["labels"].items()
    off = render(helm, tmp_path, {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert by_kind(off, "Service") == [] and by_kind(off, "ServiceMonitor") == []
    assert [p["name"] for p in container(off)["ports"]] == ["http"]  # the probes still need the server


def test_names_fit_in_63_characters(helm: Helm, tmp_path: Path) -> None:
    release = "r" * 53  # the longest release name helm accepts
    for values in (None, {"fullnameOverride": "f" * 63}, {"watchNamespaces": ["ml"]}):
        for obj in render(helm, tmp_path, values, release=release):
            name = obj["metadata"]["name"]
            assert len(name) <= 63 and not name.endswith("-"), name
    default = render(helm, tmp_path, {"fullnameOverride": "f" * 63}, release=release)
    names = {o["metadata"]["name"] for o in default if o["kind"] != "CustomResourceDefinition"}
    assert len(names) == 5, names  # fullname and its -metrics, -leader-election, -edit, -view: still distinct


def test_release_name_containing_the_chart_name_is_not_repeated(helm: Helm, tmp_path: Path) -> None:
    assert one(render(helm, tmp_path, release="kubetune"), "Deployment")["metadata"]["name"] == "kubetune"
    assert one(render(helm, tmp_path, release="ml"), "Deployment")["metadata"]["name"] == "ml-kubetune"


def test_cluster_wide_mode_uses_a_release_specific_cluster_role(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, release="team-x")
    role = operator_role(objects)
    binding = one(objects, "ClusterRoleBinding")
    assert role["metadata"]["name"] == binding["roleRef"]["name"] == "team-x-kubetune"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "team-x-kubetune", "namespace": NAMESPACE}]
    assert env(objects)["KUBETUNE_NAMESPACES"] == ""  # all namespaces


def test_namespaced_mode_grants_nothing_cluster_wide_but_reads_of_crds_and_namespaces(
    helm: Helm, tmp_path: Path
) -> None:
    cluster_wide = operator_role(render(helm, tmp_path))["rules"]
    objects = render(helm, tmp_path, {"watchNamespaces": ["ml-a", "ml-b"]})
    roles = [r for r in by_kind(objects, "Role") if not r["metadata"]["name"].endswith("leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-a", "ml-b"]
    bindings = [b for b in by_kind(objects, "RoleBinding") if b["roleRef"]["name"] == roles[0]["metadata"]["name"]]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml-a", "ml-b"]
    crd_reads = [r for r in cluster_wide if r["apiGroups"] == ["apiextensions.k8s.io"]]
    assert roles[0]["rules"] + crd_reads == cluster_wide  # the same rules, only scoped
    namespace_reads = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
    assert operator_role(objects)["rules"] == crd_reads + namespace_reads
    assert not any(r["resources"] == ["namespaces"] for r in cluster_wide)
    assert env(objects)["KUBETUNE_NAMESPACES"] == "ml-a,ml-b"


def test_leader_election(helm: Helm, tmp_path: Path) -> None:
    single = render(helm, tmp_path)
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    settings = env(single)
    assert settings["KUBETUNE_STANDALONE"] == "false" and settings["KUBETUNE_LEASE_NAME"] == "rel-kubetune-leader"
    lease_role = next(r for r in by_kind(single, "Role") if r["metadata"]["name"].endswith("leader-election"))
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rel-kubetune-leader"],
            "verbs": ["get", "update"],
        },
    ]
    ha = one(render(helm, tmp_path, {"replicaCount": 3}), "Deployment")
    assert ha["spec"]["replicas"] == 3 and "strategy" not in ha["spec"]
    with pytest.raises(HelmError, match=re.escape("replicaCount > 1 needs leaderElection.enabled")):
        render(helm, tmp_path, {"replicaCount": 2, "leaderElection": {"enabled": False}})
    alone = render(helm, tmp_path, {"leaderElection": {"enabled": False}})
    assert env(alone)["KUBETUNE_STANDALONE"] == "true" and "KUBETUNE_LEASE_NAME" not in env(alone)
    assert by_kind(alone, "Role") == []


def test_images(helm: Helm, tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert container(render(helm, tmp_path))["image"] == f"ghcr.io/kubetune/operator:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    values = {"image": {"registry": "registry.example.com", "tag": "9.9.9", "digest": digest}}
    assert container(render(helm, tmp_path, values))["image"] == f"registry.example.com/kubetune/operator@{digest}"
    values = {"image": {"registry": "", "tag": "9.9.9"}}
    assert container(render(helm, tmp_path, values))["image"] == "kubetune/operator:9.9.9"


def test_chart_env_is_what_the_operator_settings_read(helm: Helm, tmp_path: Path) -> None:
    """Every KUBETUNE_* variable the chart sets is a setting, and the values arrive typed."""
    values = {
        "watchNamespaces": ["ml-a", "ml-b"],
        "metrics": {"port": 9440},
        "operator": {"logLevel": "DEBUG", "workers": 4},
        "leaderElection": {"leaseDuration": 20, "renewDeadline": 12.5, "retryPeriod": 3},
        "workloads": {"trainerImage": "t:1", "imagePullPolicy": "Always", "prepare": {"cpu": "500m", "memory": "2Gi"}},
    }
    variables = env(render(helm, tmp_path, values))
    fields = {f.name for f in dataclasses.fields(settings.Settings)}
    names = [k.removeprefix(settings.PREFIX).lower() for k in variables if k.startswith(settings.PREFIX)]
    unknown = [name for name in names if name not in fields]
    assert unknown == []
    read = settings.from_env({**variables, "POD_NAMESPACE": NAMESPACE, "POD_NAME": "rel-kubetune-abc"})
    assert read.namespaces == ("ml-a", "ml-b")
    assert (read.metrics_port, read.log_level, read.workers, read.standalone) == (9440, "DEBUG", 4, False)
    assert (read.lease_name, read.lease_namespace) == ("rel-kubetune-leader", NAMESPACE)
    assert (read.lease_duration, read.renew_deadline, read.retry_period) == (20.0, 12.5, 3.0)
    assert (read.trainer_image, read.image_pull_policy) == ("t:1", "Always")
    assert (read.prepare_cpu, read.prepare_memory) == ("500m", "2Gi")
    assert read.identity.startswith("rel-kubetune-abc_")
    assert settings.from_env(env(render(helm, tmp_path))).all_namespaces


def test_chart_defaults_are_the_operator_defaults(helm: Helm, tmp_path: Path) -> None:
    defaults = settings.Settings()
    read = settings.from_env({**env(render(helm, tmp_path)), "POD_NAMESPACE": NAMESPACE})
    for name in ("trainer_image", "image_pull_policy", "prepare_cpu", "prepare_memory", "metrics_port", "workers",
                 "lease_duration", "renew_deadline", "retry_period", "log_level"):  # fmt: skip
        assert getattr(read, name) == getattr(defaults, name), name


def test_schema_rejects_a_typo(helm: Helm, tmp_path: Path) -> None:
    with pytest.raises(HelmError, match="additional properties 'instal' not allowed"):
        render(helm, tmp_path, {"crds": {"instal": False}})


def test_existing_service_account(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"serviceAccount": {"create": False, "name": "ops"}})
    assert by_kind(objects, "ServiceAccount") == []
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"
    with pytest.raises(HelmError, match=re.escape("serviceAccount.name is required")):
        render(helm, tmp_path, {"serviceAccount": {"create": False}})


def test_user_roles_are_aggregated_into_admin_edit_and_view(helm: Helm, tmp_path: Path) -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind(render(helm, tmp_path), "ClusterRole")}
    edit, view = roles["rel-kubetune-edit"], roles["rel-kubetune-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "create" in edit["rules"][0]["verbs"] and view["rules"][0]["verbs"] == ["get", "list", "watch"]
    off = render(helm, tmp_path, {"rbac": {"aggregateClusterRoles": False}})
    assert [r["metadata"]["name"] for r in by_kind(off, "ClusterRole")] == ["rel-kubetune"]
    assert by_kind(render(helm, tmp_path, {"rbac": {"create": False}}), "ClusterRole") == []


def _doc_rbac_table() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of the RBAC table in docs/operations.md."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("\n## RBAC\n", 1)[1].split("\n\n| API group |", 1)[1].split("\n\n", 1)[0]
    rules = set()
    for line in table.splitlines()[2:]:
        group, resources, verbs, _ = (cell.strip() for cell in line.strip("|").split(" | ", 3))
        group = "" if group == "core" else group.strip("`")
        words = re.findall(r"\b(get|list|watch|create|update|patch|delete)\b", verbs.replace(" on its own Lease", ""))
        for resource in re.findall(r"`([^`]+)`", resources):
            rules |= {(group, resource, verb) for verb in words}
    return rules


def test_operations_guide_lists_exactly_the_chart_rules(helm: Helm, tmp_path: Path) -> None:
    rules = set()
    for values in (None, {"watchNamespaces": ["ml-a"]}):
        for role in by_kind(render(helm, tmp_path, values), "ClusterRole") + by_kind(
            render(helm, tmp_path, values), "Role"
        ):
            if role["metadata"]["name"].endswith(("-edit", "-view")):
                continue  # the users' aggregated roles, documented separately
            for rule in role["rules"]:
                rules |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert _doc_rbac_table() == rules
