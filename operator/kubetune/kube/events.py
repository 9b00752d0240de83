"""Kubernetes Events about the operator's objects: what ``kubectl describe`` shows under Events.

Events are best effort (the API server may drop or expire them), so posting one never fails
a reconcile: errors are logged and swallowed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kubetune.kube import client as kube_client
from kubetune.kube import errors

log = logging.getLogger(__name__)

#: ``source.component`` of our Events.
COMPONENT = "kubetune-operator"
#: Longest message kept (the API server limits it to 1 KiB for events.k8s.io).
MAX_MESSAGE = 1024


def event_manifest(
    involved: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    now: datetime,
    instance: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved``.

    Args:
        involved: the object (needs apiVersion, kind and metadata name/namespace/uid).
        type_: ``Normal`` or ``Warning``.
        reason: CamelCase reason.
        message: what happened (truncated to :data:`MAX_MESSAGE`).
        now: the time of the event.
        instance: the reporting instance (default: the host name, i.e. the pod name).

    Returns:
        The Event manifest, named by the server (``generateName``).
    """
    metadata = involved.get("metadata") or {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata.get('name', 'object')}.", "namespace": metadata.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": f"kubetune.dev/{COMPONENT}",
        "reportingInstance": instance or socket.gethostname(),
    }


async def post(
    api: kube_client.Client, involved: Mapping[str, Any], type_: str, reason: str, message: str
) -> dict[str, Any] | None:
    """Post an Event; log and return None when the API server refuses it.

    Args:
        api: the client.
        involved: the object the event is about.
        type_: ``Normal`` or ``Warning``.
        reason: CamelCase reason.
        message: what happened.

    Returns:
        The created Event, or None if posting failed.
    """
    manifest = event_manifest(involved, type_, reason, message, datetime.now(UTC))
    try:
        return await api.create(kube_client.EVENTS, manifest)
    except (TimeoutError, errors.ApiError, aiohttp.ClientError) as err:
        log.warning("could not post event %s on %s: %s", reason, manifest["involvedObject"]["name"], err)
        return None
