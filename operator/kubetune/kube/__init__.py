"""The only code that talks to the API server (besides kopf's own watches).

``config`` finds the server and credentials (kubeconfig or in-cluster), ``client`` is a small
aiohttp client with typed ``errors``, ``events`` posts Kubernetes Events and ``leader`` elects
one active replica with a Lease. Only ``kubetune.handlers`` imports this package.
"""
