"""A small asynchronous Kubernetes client on aiohttp: get, list, create, replace, patch, delete.

Why not the ``kubernetes`` package: it is large (its import alone costs tens of MB of RSS) and
synchronous, while the operator must stay under 250 MB with 1000 jobs and already runs on
aiohttp through kopf. The operator needs a handful of verbs on a handful of resources; this
module provides exactly those, with typed errors (:mod:`kubetune.kube.errors`), retries of
transient failures, pagination of lists, and a hook that counts every request for the metrics.
Watching is kopf's job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from kubetune.api import v1alpha1
from kubetune.kube import errors
from kubetune.kube.config import ConnectionConfig

log = logging.getLogger(__name__)

#: Content types of the patch flavours the API server accepts.
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
#: Methods that change something (what "API writes" counts).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Resource:
    """A resource type: where its objects live in the REST API.

    Attributes:
        group: API group ("" for the core group).
        version: API version.
        plural: resource name in URLs.
        kind: object kind.
        namespaced: whether objects live in namespaces.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``apiVersion`` of its objects."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection, or of one object (and a subresource).

        Args:
            namespace: the namespace (namespaced resources; None lists across namespaces).
            name: the object's name.
            subresource: e.g. ``status``.

        Returns:
            e.g. ``/apis/batch/v1/namespaces/ns/jobs/name``.
        """
        parts = ["/api/v1"] if not self.group else [f"/apis/{self.group}/{self.version}"]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


PODS = Resource("", "v1", "pods", "Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICES = Resource("", "v1", "services", "Service")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SECRETS = Resource("", "v1", "secrets", "Secret")
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
JOBS = Resource("batch", "v1", "jobs", "Job")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
FINETUNEJOBS = Resource(v1alpha1.GROUP, v1alpha1.VERSION, "finetunejobs", "FineTuneJob")
MODELDEPLOYMENTS = Resource(v1alpha1.GROUP, v1alpha1.VERSION, "modeldeployments", "ModelDeployment")

KNOWN = (
    PODS,
    CONFIGMAPS,
    SERVICES,
    SERVICEACCOUNTS,
    SECRETS,
    EVENTS,
    NAMESPACES,
    JOBS,
    DEPLOYMENTS,
    ROLES,
    ROLEBINDINGS,
    LEASES,
    HPAS,
    FINETUNEJOBS,
    MODELDEPLOYMENTS,
)


def resource_of(manifest: Mapping[str, Any]) -> Resource:
    """The resource type of a manifest, from its ``apiVersion`` and ``kind``.

    Args:
        manifest: an object with ``apiVersion`` and ``kind``.

    Returns:
        The matching known resource.

    Raises:
        KeyError: the kind is not one this client knows.
    """
    for resource in KNOWN:
        if resource.api_version == manifest.get("apiVersion") and resource.kind == manifest.get("kind"):
            return resource
    raise KeyError(f"unknown resource {manifest.get('apiVersion')}/{manifest.get('kind')}")


#: Called after each request with (method, resource plural, HTTP status or 0 on a connection error).
RequestObserver = Callable[[str, str, int], None]


class Client:
    """An asynchronous API client bound to one server and one set of credentials.

    Use it as an async context manager (``async with Client(config) as client``), or call
    :meth:`close` when done.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        user_agent: str = "kubetune-operator",
        timeout: float = 30.0,
        max_connections: int = 64,
        retries: int = 3,
        observer: RequestObserver | None = None,
    ) -> None:
        self.config = config
        self._user_agent = user_agent
        self._timeout = timeout
        self._max_connections = max_connections
        self._retries = retries
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None
        self._token: tuple[str | None, float] = (None, 0.0)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )
        return self._session

    def _authorization(self) -> dict[str, str]:
        token, read_at = self._token
        if self.config.token_file and time.monotonic() - read_at > 60:
            token = self.config.bearer_token()
            self._token = (token, time.monotonic())
        elif not self.config.token_file:
            token = self.config.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
    ) -> Any:
        """Send one request, retrying connection errors, 429 and 5xx answers.

        Args:
            method: HTTP method.
            path: absolute API path.
            params: query parameters.
            body: JSON-serialisable body.
            content_type: the body's content type.
            resource: resource name for the request observer.

        Returns:
            The decoded JSON answer (or text when it is not JSON).

        Raises:
            errors.ApiError: the server rejected the request (a subclass per reason).
            aiohttp.ClientError: the server could not be reached after the retries.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._send(method, path, params, data, headers, resource)
            except (TimeoutError, aiohttp.ClientConnectionError, errors.ServerError) as err:
                if attempt > self._retries:
                    raise
                delay = 0.2 * 2 ** (attempt - 1)
                log.debug("%s %s failed (%s); retrying in %.1fs", method, path, err, delay)
                await asyncio.sleep(delay)
                continue
            return result

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: dict[str, str],
        resource: str,
    ) -> Any:
        status = 0
        try:
            async with self._http().request(
                method,
                self.config.server + path,
                params=params,
                data=data,
                headers={**headers, **self._authorization()},
            ) as response:
                status = response.status
                text = await response.text()
        finally:
            if self._observer is not None:
                self._observer(method, resource, status)
        try:
            decoded: Any = json.loads(text) if text else None
        except ValueError:
            decoded = text
        if status >= 400:
            raise errors.from_response(status, decoded, method, path)
        return decoded

    # -- verbs -----------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Read one object.

        Raises:
            errors.NotFound: it does not exist.
        """
        result: dict[str, Any] = await self.request("GET", resource.path(namespace, name), resource=resource.plural)
        return result

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> list[dict[str, Any]]:
        """List objects (all pages), optionally filtered by label and field selectors.

        Args:
            resource: the resource type.
            namespace: the namespace; None lists across all namespaces.
            label_selector: e.g. ``kubetune.dev/finetunejob=demo``.
            field_selector: e.g. ``metadata.name=demo``.
            page_size: objects per page.

        Returns:
            The items.
        """
        params = {"limit": str(page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", resource.path(namespace), params=params, resource=resource.plural)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def create(self, resource: Resource, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object.

        Raises:
            errors.AlreadyExists: an object of that name exists.
        """
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        result: dict[str, Any] = await self.request(
            "POST", resource.path(namespace), body=body, resource=resource.plural
        )
        return result

    async def replace(
        self, resource: Resource, name: str, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Replace an object (PUT); with ``metadata.resourceVersion`` set this is a compare-and-swap.

        Raises:
            errors.Conflict: the object changed since ``resourceVersion``.
        """
        result: dict[str, Any] = await self.request(
            "PUT", resource.path(namespace, name), body=body, resource=resource.plural
        )
        return result

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Patch an object or one of its subresources.

        Args:
            resource: the resource type.
            name: the object's name.
            patch: the patch document (a dict, or a list for JSON patch).
            namespace: the namespace.
            patch_type: ``merge``, ``json``, ``strategic`` or ``apply`` (server-side apply).
            subresource: e.g. ``status``.
            field_manager: the field manager (required by server-side apply).
            force: take over conflicting fields (server-side apply).

        Returns:
            The object after the patch.
        """
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        result: dict[str, Any] = await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=PATCH_TYPES[patch_type],
            resource=resource.plural if not subresource else f"{resource.plural}/{subresource}",
        )
        return result

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> None:
        """Delete an object.

        Args:
            resource: the resource type.
            name: the object's name.
            namespace: the namespace.
            propagation: ``Background``, ``Foreground`` or ``Orphan`` for its dependents.
            uid: delete only the object with this uid (a precondition).

        Raises:
            errors.NotFound: it does not exist.
        """
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self.request("DELETE", resource.path(namespace, name), body=body, resource=resource.plural)
