"""kubetune: fine-tune LLMs and serve them with Triton, declared as Kubernetes resources.

The package is layered so that the pure core can be tested without a cluster:
``handlers -> reconcile, render -> api``, with ``kube`` used by ``handlers`` only.
"""

__version__ = "0.1.0"
