"""Well-known labels and annotations of the objects kubetune creates or reads.

They are part of the API: users select children with them (``kubectl get jobs -l
kubetune.dev/finetunejob=my-job``), and both the renderers (which write them) and the
reconciler (which reads them back from observed Jobs) need the same keys. ``render`` and
``reconcile`` may not import each other, so the keys live here, next to the models.
"""

from __future__ import annotations

#: ``app.kubernetes.io/name`` of every child: the application.
NAME = "app.kubernetes.io/name"
#: ``app.kubernetes.io/managed-by`` of every child: the operator.
MANAGED_BY = "app.kubernetes.io/managed-by"
#: ``app.kubernetes.io/component``: prepare, train or evaluate.
COMPONENT = "app.kubernetes.io/component"
#: ``app.kubernetes.io/instance``: the owning resource's name.
INSTANCE = "app.kubernetes.io/instance"
#: Value of :data:`NAME` and :data:`MANAGED_BY`.
APP = "kubetune"

#: Name of the FineTuneJob a child belongs to.
FINETUNEJOB = "kubetune.dev/finetunejob"
#: Train attempt number (1 for the first attempt) of a train Job and its pods.
ATTEMPT = "kubetune.dev/attempt"
#: Name of the ModelDeployment a child belongs to; the handler watches Jobs and Deployments by it.
MODELDEPLOYMENT = "kubetune.dev/modeldeployment"
#: Label on build and smoke-test Jobs, and annotation on the Triton pod template: the revision.
REVISION = "kubetune.dev/revision"

#: Kueue's LocalQueue label, set on every Job when ``spec.queueName`` is set.
KUEUE_QUEUE_NAME = "kueue.x-k8s.io/queue-name"

#: Label of the pods a Job controller creates (set by Kubernetes).
JOB_NAME = "batch.kubernetes.io/job-name"


def pod_labels_annotation(component: str) -> str:
    """FineTuneJob annotation with extra labels (a JSON object) for one component's pods.

    A debugging and testing aid: e.g. ``kubetune.dev/train-pod-labels: '{"kwok.x-k8s.io/fail": "true"}'``
    makes the simulated train pods fail. Labels kubetune sets itself cannot be overridden.

    Args:
        component: ``prepare``, ``train`` or ``evaluate``.

    Returns:
        The annotation key, e.g. ``kubetune.dev/train-pod-labels``.
    """
    return f"kubetune.dev/{component}-pod-labels"


def pod_annotations_annotation(component: str) -> str:
    """FineTuneJob annotation with extra annotations (a JSON object) for one component's pods.

    Args:
        component: ``prepare``, ``train`` or ``evaluate``.

    Returns:
        The annotation key, e.g. ``kubetune.dev/train-pod-annotations``.
    """
    return f"kubetune.dev/{component}-pod-annotations"
