"""Install the generated CRDs into the test cluster once, and wait until they serve."""

from __future__ import annotations

from pathlib import Path

from tests.support.cluster import Cluster

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("finetunejobs.kubetune.dev", "modeldeployments.kubetune.dev")


def install_crds(cluster: Cluster) -> None:
    """Server-side apply crds/ and wait for the CRDs to be Established."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=kubetune-tests", "-f", str(CRDS_DIR)
    )
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{name}" for name in CRD_NAMES])
