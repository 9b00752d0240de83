"""Leader election on a coordination.k8s.io Lease, the way client-go does it.

Several operator replicas may run (a rolling update, or replicas for fast fail-over); only the
one holding the Lease may act. A replica acquires the Lease when it is free or when its holder
has not renewed it for ``lease_duration`` seconds *as observed locally* (so clocks need not
agree), renews it every ``retry_period`` seconds, and gives up leadership, i.e. stops the
process, when it could not renew for ``renew_deadline`` seconds: then a new leader may already
be acting. Every write is a compare-and-swap on the Lease's ``resourceVersion``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kubetune.kube import client as kube_client
from kubetune.kube import errors

log = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):  # noqa: N818 - it is an event, not a programming error
    """The Lease could not be renewed in time; another replica may now be the leader."""


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseSettings:
    """Timing of the election (client-go's defaults are 15, 10 and 2 seconds).

    Attributes:
        lease_duration: how long a non-renewed Lease stays with its holder.
        renew_deadline: how long the leader keeps trying to renew before giving up.
        retry_period: time between attempts.
    """

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    """Acquire, hold and release one Lease.

    Args:
        api: the client.
        name: the Lease's name.
        namespace: the Lease's namespace.
        identity: this replica's identity (pod name and a random suffix).
        settings: the timing.
        clock: monotonic clock (tests replace it).
    """

    def __init__(
        self,
        api: kube_client.Client,
        name: str,
        namespace: str,
        identity: str,
        settings: LeaseSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self._clock = clock
        self._observed: tuple[Any, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this replica renewed the Lease within the renew deadline."""
        return self._renewed_at is not None and self._clock() - self._renewed_at < self.settings.renew_deadline

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        previous = previous or {}
        ours = previous.get("holderIdentity") == self.identity
        transitions = int(previous.get("leaseTransitions") or 0) + (0 if ours or not previous else 1)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.settings.lease_duration)),
            "acquireTime": previous.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease.

        Returns:
            True when this replica holds the Lease now.
        """
        try:
            lease = await self.api.get(kube_client.LEASES, self.name, self.namespace)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                await self.api.create(kube_client.LEASES, body)
            except errors.AlreadyExists:
                return False
            return self._won()
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        expired = self._clock() - self._observed_at >= duration
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(spec)
        try:
            await self.api.replace(kube_client.LEASES, self.name, lease, self.namespace)
        except (errors.Conflict, errors.NotFound):
            return False
        return self._won()

    def _won(self) -> bool:
        if not self.is_leader:
            log.info("became the leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        self._renewed_at = self._clock()
        return True

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (TimeoutError, errors.ApiError, aiohttp.ClientError) as err:
            log.warning("leader election: %s", err)
            return False

    async def acquire(self) -> None:
        """Block until this replica is the leader."""
        log.info("waiting to become the leader (Lease %s/%s)", self.namespace, self.name)
        while not await self._attempt():
            await asyncio.sleep(self.settings.retry_period * (1 + random.random() * 0.2))

    async def hold(self) -> None:
        """Renew the Lease until leadership is lost.

        Raises:
            LeadershipLost: renewing failed for ``renew_deadline`` seconds (or someone else took it).
        """
        while True:
            await asyncio.sleep(self.settings.retry_period)
            if await self._attempt():
                continue
            if not self.is_leader:
                raise LeadershipLost(f"could not renew Lease {self.namespace}/{self.name} in time")

    async def release(self) -> None:
        """Give the Lease up at shutdown so another replica takes over at once (best effort)."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = await self.api.get(kube_client.LEASES, self.name, self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(
                {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro_time(datetime.now(UTC))}
            )
            await self.api.replace(kube_client.LEASES, self.name, lease, self.namespace)
            log.info("released the Lease %s/%s", self.namespace, self.name)
        except (TimeoutError, errors.ApiError, aiohttp.ClientError) as err:
            log.warning("could not release the Lease: %s", err)
