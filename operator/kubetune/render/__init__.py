"""Pure functions from a typed FineTuneJob to the Kubernetes manifests of its children.

No I/O and no kopf here: a :class:`~kubetune.render.context.Context` goes in, plain dicts come
out (``config`` for the trainer's ConfigMap, ``rbac`` for its per-job identity, ``jobs`` for the
prepare/train/evaluate Jobs and the rendezvous Service, ``deploy`` for the ModelDeployment made
on success). ``names`` holds the deterministic names everything else relies on.
"""
