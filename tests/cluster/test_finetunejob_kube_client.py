"""The operator's own API client (kubetune.kube) against the real API server: verbs and typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubetune.kube import client as kube_client
from kubetune.kube import config as kube_config
from kubetune.kube import errors, events

from tests.support.cluster import Cluster

Scenario = Callable[[kube_client.Client], Awaitable[None]]


def run(cluster: Cluster, scenario: Scenario, calls: list[tuple[str, str, int]] | None = None) -> None:
    async def main() -> None:
        config = kube_config.from_kubeconfig(cluster.kubeconfig)
        observer = (lambda m, r, c: calls.append((m, r, c))) if calls is not None else None
        async with kube_client.Client(config, observer=observer) as api:
            await scenario(api)

    asyncio.run(main())


def config_map(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def test_verbs(cluster: Cluster, namespace: str) -> None:
    calls: list[tuple[str, str, int]] = []

    async def scenario(api: kube_client.Client) -> None:
        created = await api.create(kube_client.CONFIGMAPS, config_map("a", namespace, k="1"))
        assert created["metadata"]["uid"]
        for i in range(3):
            await api.create(
                kube_client.CONFIGMAPS,
                {
                    **config_map(f"page-{i}", namespace),
                    "metadata": {"name": f"page-{i}", "namespace": namespace, "labels": {"t": "paged"}},
                },
            )
        paged = await api.list(kube_client.CONFIGMAPS, namespace, label_selector="t=paged", page_size=1)
        assert sorted(c["metadata"]["name"] for c in paged) == ["page-0", "page-1", "page-2"]
        merged = await api.patch(kube_client.CONFIGMAPS, "a", {"data": {"k": "2"}}, namespace)
        assert merged["data"] == {"k": "2"}
        jsoned = await api.patch(
            kube_client.CONFIGMAPS, "a", [{"op": "add", "path": "/data/j", "value": "3"}], namespace, patch_type="json"
        )
        assert jsoned["data"] == {"k": "2", "j": "3"}
        applied = await api.patch(
            kube_client.CONFIGMAPS, "b", config_map("b", namespace, s="4"), namespace,
            patch_type="apply", field_manager="kubetune-test", force=True,
        )  # fmt: skip
        assert applied["data"] == {"s": "4"}
        current = await api.get(kube_client.CONFIGMAPS, "a", namespace)
        current["data"]["k"] = "5"
        replaced = await api.replace(kube_client.CONFIGMAPS, "a", current, namespace)
        assert replaced["data"]["k"] == "5"
        await api.delete(kube_client.CONFIGMAPS, "a", namespace)
        with pytest.raises(errors.NotFound):
            await api.get(kube_client.CONFIGMAPS, "a", namespace)

    run(cluster, scenario, calls)
    assert ("POST", "configmaps", 201) in calls and ("DELETE", "configmaps", 200) in calls
    assert ("GET", "configmaps", 404) in calls


def test_typed_errors(cluster: Cluster, namespace: str) -> None:
    async def scenario(api: kube_client.Client) -> None:
        await api.create(kube_client.CONFIGMAPS, config_map("dup", namespace))
        with pytest.raises(errors.AlreadyExists) as exists:
            await api.create(kube_client.CONFIGMAPS, config_map("dup", namespace))
        assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
        stale = await api.get(kube_client.CONFIGMAPS, "dup", namespace)
        await api.patch(kube_client.CONFIGMAPS, "dup", {"data": {"x": "1"}}, namespace)
        with pytest.raises(errors.Conflict):
            await api.replace(kube_client.CONFIGMAPS, "dup", stale, namespace)
        with pytest.raises(errors.Invalid) as invalid:
            await api.create(kube_client.CONFIGMAPS, config_map("Not_Valid", namespace))
        assert "Not_Valid" in invalid.value.message
        with pytest.raises(errors.NotFound):
            await api.delete(kube_client.CONFIGMAPS, "missing", namespace)
        with pytest.raises(errors.Conflict):  # uid precondition
            await api.delete(kube_client.CONFIGMAPS, "dup", namespace, uid="00000000-0000-0000-0000-000000000000")

    run(cluster, scenario)


def test_forbidden_and_unauthorized(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": namespace}}
    )
    review = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/nobody/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    base = kube_config.from_kubeconfig(cluster.kubeconfig)

    async def main() -> None:
        nobody = kube_config.ConnectionConfig(server=base.server, ca_data=base.ca_data, token=review["status"]["token"])
        async with kube_client.Client(nobody) as api:
            with pytest.raises(errors.Forbidden):
                await api.list(kube_client.SECRETS, namespace)
        stranger = kube_config.ConnectionConfig(server=base.server, ca_data=base.ca_data, token="not-a-token")
        async with kube_client.Client(stranger) as api:
            with pytest.raises(errors.Unauthorized):
                await api.list(kube_client.SECRETS, namespace)

    asyncio.run(main())


def test_event_is_posted_about_an_object(cluster: Cluster, namespace: str) -> None:
    async def scenario(api: kube_client.Client) -> None:
        target = await api.create(kube_client.CONFIGMAPS, config_map("subject", namespace))
        posted = await events.post(api, target, "Warning", "SomethingHappened", "details " * 300)
        assert posted is not None and posted["involvedObject"]["uid"] == target["metadata"]["uid"]
        assert len(posted["message"]) == events.MAX_MESSAGE
        refused = await events.post(
            api, {"metadata": {"name": "x", "namespace": "no-such-namespace-xyz"}}, "Normal", "R", "m"
        )
        assert refused is None  # logged, never raised

    run(cluster, scenario)
    listed = cluster.get("events", namespace=namespace, field="involvedObject.name=subject")["items"]
    assert [(e["type"], e["reason"]) for e in listed] == [("Warning", "SomethingHappened")]
