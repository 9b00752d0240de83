"""Two operator replicas with leader election: only the Lease holder acts; a follower takes over."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from tests.support.cluster import Cluster
from tests.support.wait import wait_for

if TYPE_CHECKING:
    from tests.cluster.conftest import FineTuneJobs, OperatorProcess

FAST_ELECTION = ["--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5"]


def _acting(process: OperatorProcess) -> bool:
    return "became the leader" in process.logs()


def test_only_the_leader_acts_and_a_follower_takes_over(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    ftjs: FineTuneJobs,
) -> None:
    args = ["--lease-namespace", namespace, "--lease-name", "kubetune-test", *FAST_ELECTION]
    first = start_operator([namespace], args=args)
    wait_for(lambda: _acting(first), timeout=20, description="the first replica to lead")
    second = start_operator([namespace], args=args)
    ftjs.create("led-1")
    ftjs.wait_phase("led-1", "Succeeded")
    assert not _acting(second)
    assert "waiting to become the leader" in second.logs()
    assert second.metric("kubetune_leader") == 0 and first.metric("kubetune_leader") == 1
    assert second.metric("kubetune_api_requests_total", method="POST") == 0  # the follower wrote nothing
    lease = cluster.get("lease", "kubetune-test", namespace=namespace)
    assert lease["spec"]["holderIdentity"].split("_")[0] != ""

    first.kill(signal.SIGKILL)  # no release: the follower waits for the Lease to expire
    wait_for(lambda: _acting(second), timeout=30, description="the second replica to take over")
    ftjs.create("led-2")
    ftjs.wait_phase("led-2", "Succeeded")
    assert cluster.get("lease", "kubetune-test", namespace=namespace)["spec"]["leaseTransitions"] >= 1

    # A graceful stop releases the Lease, so a new replica leads at once.
    assert second.stop() == 0
    assert not cluster.get("lease", "kubetune-test", namespace=namespace)["spec"].get("holderIdentity")
    third = start_operator([namespace], args=args)
    wait_for(lambda: _acting(third), timeout=5, description="the third replica to lead at once")


def test_a_frozen_leader_that_lost_the_lease_stops_instead_of_acting(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    ftjs: FineTuneJobs,
) -> None:
    args = ["--lease-namespace", namespace, "--lease-name", "kubetune-frozen", *FAST_ELECTION]
    first = start_operator([namespace], args=args)
    wait_for(lambda: _acting(first), timeout=20, description="the first replica to lead")
    second = start_operator([namespace], args=args)
    first.process.send_signal(signal.SIGSTOP)  # frozen: cannot renew
    try:
        wait_for(lambda: _acting(second), timeout=30, description="the second replica to take over")
        ftjs.create("during-freeze")  # queued by nobody but the new leader
        ftjs.wait_phase("during-freeze", "Succeeded")
    finally:
        resumed_at = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]  # the log's timestamp format
        first.process.send_signal(signal.SIGCONT)
    assert first.process.wait(timeout=20) == 1  # it noticed it lost the Lease and stopped
    assert "could not renew Lease" in first.logs()
    acted_after_resume = [
        line
        for line in first.logs().splitlines()
        if line[:23] >= resumed_at and ("created " in line or "deleted " in line or "applied " in line)
    ]
    assert acted_after_resume == []
    holder = cluster.get("lease", "kubetune-frozen", namespace=namespace)["spec"]["holderIdentity"]
    assert holder and holder in second.logs()
