"""kopf handlers and the operator process: read, call reconcile/render, apply via kube, write status.

``app`` is ``kubetune operator`` (settings, leader election, kopf, workers, probes and metrics);
``finetunejob`` holds the FineTuneJob handlers and controller; ``workqueue`` serialises reconciles
per object. Handler modules register with kopf by decorator when imported.
"""
