"""Shared helpers for kubetune's tests: polling and the local control plane.

Why this package exists: unit, cluster and end-to-end tests all wait for things and
most talk to the same local cluster; these helpers keep that in one place.
``tests.support.wait`` has no dependency on a cluster; ``tests.support.cluster`` wraps
what ``hack/cluster.sh`` runs.
"""
