"""The chart on the local control plane: server dry-run, install, CRD upgrade, restricted PSS, RBAC.

Every test uses its own release and namespace and uninstalls at the end. CRDs and ClusterRoles
are cluster-scoped and shared with other tests: ClusterRole names carry the release name, and
the one test that installs the CRDs adopts the existing ones (``--take-ownership``) and leaves
them behind on uninstall (keep policy), as a user's cluster would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster, KubectlError
from tests.support.crds import CRD_NAMES, install_crds
from tests.support.helm import CHART, Helm, Release, find_helm
from tests.support.wait import wait_for

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


@pytest.fixture(scope="module")
def helm(cluster: Cluster) -> Helm:
    return Helm(binary=find_helm(), kubeconfig=cluster.kubeconfig, kube_version=cluster.version or "v1.34.4")


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    install_crds(cluster)


@pytest.fixture
def release(cluster: Cluster, helm: Helm, tmp_path: Path) -> Iterator[Release]:
    rel = Release(cluster, helm, tmp_path, labels=RESTRICTED)
    try:
        yield rel
    finally:
        rel.cleanup()


def test_template_applies_with_server_dry_run(
    cluster: Cluster, helm: Helm, crds: None, namespace: str, tmp_path: Path
) -> None:
    watched = cluster.create_namespace(prefix="helm-watched")
    try:
        for values in (None, {"watchNamespaces": [watched], "replicaCount": 2}):
            text = helm.template_text("dry", namespace, values, tmp_path)
            out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
            assert "deployment.apps/dry-kubetune created (server dry run)" in out, out
            assert "customresourcedefinition.apiextensions.k8s.io/finetunejobs.kubetune.dev" in out
    finally:
        cluster.delete_namespace(watched)


def _events(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    items = cluster.get("events", namespace=namespace)["items"]
    return [e.get("message", "") for e in items if e.get("reason") == reason]


def test_install_in_a_restricted_namespace_creates_crds_rbac_and_a_ready_operator(
    cluster: Cluster, release: Release
) -> None:
    # The namespace really enforces the restricted standard: a root pod is refused.
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}}]},
    }
    with pytest.raises(KubectlError, match="violates PodSecurity"):
        cluster.kubectl("create", "--dry-run=server", "-n", release.namespace, "-f", "-", input=yaml.dump(root_pod))

    notes = release.install(None, "--take-ownership")
    assert "kubectl --namespace" in notes and "rollout status" in notes

    for name in CRD_NAMES:
        crd = cluster.get("crd", name)
        annotations = crd["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert annotations["meta.helm.sh/release-name"] == release.name
        assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    role = cluster.get("clusterrole", release.fullname)
    assert any("finetunejobs" in r.get("resources", []) for r in role["rules"])
    binding = cluster.get("clusterrolebinding", release.fullname)
    assert binding["subjects"][0]["namespace"] == release.namespace

    deployment = cluster.get("deployment", release.fullname, namespace=release.namespace)
    assert deployment["status"].get("readyReplicas") == 1, deployment["status"]
    pods = cluster.get("pods", namespace=release.namespace, label=f"app.kubernetes.io/instance={release.name}")
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running"]
    assert _events(cluster, release.namespace, "FailedCreate") == []


def _with_extra_printer_column(tmp_path: Path) -> Path:
    """A copy of the chart whose FineTuneJob CRD has one more (wide) printer column, first."""
    chart = tmp_path / "chart-v2"
    shutil.copytree(CHART, chart)
    path = chart / "files" / "crds" / "kubetune.dev_finetunejobs.yaml"
    text = path.read_text(encoding="utf-8")
    column = "    additionalPrinterColumns:\n"
    extra = column + "    - name: Attempts\n      type: integer\n      jsonPath: .status.attempts\n      priority: 1\n"
    assert column in text
    path.write_text(text.replace(column, extra, 1), encoding="utf-8")
    return chart


def _columns(cluster: Cluster) -> list[str]:
    crd = cluster.get("crd", "finetunejobs.kubetune.dev")
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_upgrade_updates_a_changed_crd_and_uninstall_keeps_crds(
    cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    release.install(None, "--take-ownership")
    original = _columns(cluster)
    assert "Attempts" not in original
    try:
        release.install(None, chart=_with_extra_printer_column(tmp_path))
        assert _columns(cluster) == ["Attempts", *original]
    finally:
        release.install(None)  # back to the chart of this checkout
    assert _columns(cluster) == original

    release.helm.run("uninstall", release.name, "--namespace", release.namespace, "--wait")
    for name in CRD_NAMES:
        cluster.get("crd", name)  # kept
    with pytest.raises(KubectlError) as gone:
        cluster.get("clusterrole", release.fullname)
    assert gone.value.not_found


@pytest.fixture
def rbac_release(cluster: Cluster, helm: Helm, crds: None, tmp_path: Path) -> Iterator[Release]:
    rel = Release(cluster, helm, tmp_path)
    try:
        rel.install({"crds": {"install": False}})
        yield rel
    finally:
        rel.cleanup()


#: (verb, resource, subresource) the operator needs in every namespace it watches.
NEEDED = [
    ("watch", "finetunejobs.kubetune.dev", ""),
    ("delete", "finetunejobs.kubetune.dev", ""),  # ttlSecondsAfterFinished
    ("patch", "finetunejobs.kubetune.dev", "status"),
    ("get", "finetunejobs.kubetune.dev", "status"),  # granted on to the per-job trainer Role
    ("create", "modeldeployments.kubetune.dev", ""),
    ("patch", "modeldeployments.kubetune.dev", ""),
    ("patch", "modeldeployments.kubetune.dev", "status"),
    ("patch", "deployments.apps", ""),
    ("patch", "services", ""),
    ("delete", "horizontalpodautoscalers.autoscaling", ""),
    ("create", "jobs.batch", ""),
    ("delete", "jobs.batch", ""),
    ("create", "roles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("create", "serviceaccounts", ""),
    ("create", "configmaps", ""),
    ("create", "deployments.apps", ""),
    ("create", "horizontalpodautoscalers.autoscaling", ""),
    ("list", "pods", ""),
    ("watch", "pods", ""),
    ("create", "events", ""),
]

#: Verbs the operator never uses: each must be refused.
REFUSED = [
    ("create", "finetunejobs.kubetune.dev", ""),
    ("update", "finetunejobs.kubetune.dev", ""),
    ("patch", "finetunejobs.kubetune.dev", ""),  # the spec is the user's
    ("delete", "modeldeployments.kubetune.dev", ""),
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("create", "secrets", ""),
    ("get", "pods", ""),
    ("create", "pods", ""),
    ("delete", "pods", ""),
    ("create", "pods", "exec"),
    ("get", "pods", "log"),
    ("update", "jobs.batch", ""),
    ("patch", "jobs.batch", ""),
    ("patch", "roles.rbac.authorization.k8s.io", ""),  # a trainer Role never changes
    ("bind", "roles.rbac.authorization.k8s.io", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
    ("delete", "serviceaccounts", ""),
    ("delete", "deployments.apps", ""),  # garbage-collected through owner references
    ("delete", "configmaps", ""),
    ("list", "configmaps", ""),
    ("patch", "nodes", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "persistentvolumeclaims", ""),
    ("list", "namespaces", ""),  # only kopf in namespaced mode needs it
]


def test_cluster_wide_rbac_grants_what_the_operator_uses_and_nothing_else(
    cluster: Cluster, rbac_release: Release
) -> None:
    other = "default"
    granted = {(v, r, s): rbac_release.can(v, r, other, s) for v, r, s in NEEDED}
    assert all(granted.values()), {k: v for k, v in granted.items() if not v}
    refused = {(v, r, s): rbac_release.can(v, r, other, s) for v, r, s in REFUSED}
    assert not any(refused.values()), {k: v for k, v in refused.items() if v}
    lease = f"{rbac_release.fullname}-leader"
    assert rbac_release.can("update", f"leases.coordination.k8s.io/{lease}", rbac_release.namespace)
    assert not rbac_release.can("update", "leases.coordination.k8s.io/other", rbac_release.namespace)
    assert not rbac_release.can("patch", f"leases.coordination.k8s.io/{lease}", rbac_release.namespace)
    assert not rbac_release.can("create", "leases.coordination.k8s.io", other)


def test_namespaced_rbac_stops_at_the_watched_namespaces(
    cluster: Cluster, helm: Helm, crds: None, tmp_path: Path
) -> None:
    watched = cluster.create_namespace(prefix="helm-watched")
    rel = Release(cluster, helm, tmp_path)
    try:
        rel.install({"crds": {"install": False}, "watchNamespaces": [watched]})
        for verb, resource, sub in NEEDED:
            assert rel.can(verb, resource, watched, sub), (verb, resource, sub)
            assert not rel.can(verb, resource, rel.namespace, sub), (verb, resource, sub)
        assert not rel.can("watch", "finetunejobs.kubetune.dev")  # not cluster-wide
        assert rel.can("watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert rel.can("list", "namespaces") and not rel.can("get", "namespaces")
    finally:
        rel.cleanup()
        cluster.delete_namespace(watched)


def test_namespace_editors_may_manage_kubetune_resources(cluster: Cluster, rbac_release: Release) -> None:
    team = cluster.create_namespace(prefix="helm-team")
    try:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-edit", "namespace": team},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        }
        cluster.apply(binding)

        def alice_can(verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
            args = ["auth", "can-i", verb, resource, "--as=alice", "-n", namespace, f"--subresource={subresource}"]
            return cluster.kubectl(*args, check=False).strip() == "yes"

        wait_for(
            lambda: alice_can("create", "finetunejobs.kubetune.dev", team),
            timeout=30,
            description="the aggregated edit role to let alice create FineTuneJobs",
        )
        assert alice_can("delete", "modeldeployments.kubetune.dev", team)
        assert alice_can("get", "finetunejobs.kubetune.dev", team, "status")
        assert not alice_can("patch", "finetunejobs.kubetune.dev", team, "status")  # status is the operator's
        assert not alice_can("create", "finetunejobs.kubetune.dev", rbac_release.namespace)
    finally:
        cluster.delete_namespace(team)
