"""Pure decisions: from a FineTuneJob and its observed children to the next actions and status.

``finetunejob.decide`` is the lifecycle; ``observed`` summarises child Jobs (``diagnose`` says
why one failed); ``conditions`` updates condition lists the Kubernetes way; ``reasons`` is the
documented vocabulary; ``status`` turns a decision into a minimal merge patch. Nothing here
performs I/O or imports kopf, so every transition is unit-tested without a cluster.
"""
