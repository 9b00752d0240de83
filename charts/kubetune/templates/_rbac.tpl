{{/*
The permissions of the operator, derived from its code: the kubetune.kube client calls of the
handlers and kopf's watches (docs/operations.md, "RBAC", lists each rule with the reason;
tests/cluster/test_helm_operator.py runs the operator with exactly these). The same namespaced
rules go into the ClusterRole (all namespaces) or into one Role per watched namespace.

Note on escalation: the operator creates a Role per FineTuneJob that grants get/patch on that
one job's status. Kubernetes lets it only because the operator holds those verbs itself; do
not remove them when trimming rules.
*/}}
{{- define "kubetune.rules.namespaced" -}}
# FineTuneJobs: kopf lists and watches them (both controllers); the controllers read them (a
# job, its fineTuneJobRef base, a ModelDeployment's job), and a finished one is deleted after
# spec.ttlSecondsAfterFinished. The spec is never written.
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch", "delete"]
# Status writes. get is never called, but it is what lets the operator grant get/patch on one
# job's status to that job's trainer Role (Kubernetes refuses to grant what one does not hold).
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs/status"]
  verbs: ["get", "patch"]
# ModelDeployments: kopf lists and watches them; the FineTuneJob controller server-side applies
# the one of spec.deploy (apply is a patch, and a create when it does not exist yet).
- apiGroups: ["kubetune.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["kubetune.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Jobs (prepare, train, evaluate; engine build, smoke test) are created, never changed, listed
# by owner label, watched by kopf, and deleted on suspend or when a revision no longer needs them.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Pods are only read: listed per Job (why it failed: exit code, OOMKilled; a build's report), and
# prepare pods are watched by kopf (a prepare pod's success starts the train Job).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# A FineTuneJob's trainer identity: created once, never changed (get: adopting after a restart).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create"]
# The trainer config and the rendezvous Service of a FineTuneJob (created once); a
# ModelDeployment's engine records and Triton Service (server-side applied).
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "create", "patch"]
# The Triton Deployment: server-side applied, watched by kopf for readiness.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Its HorizontalPodAutoscaler: server-side applied, deleted when spec.autoscaling is removed.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
# Events on FineTuneJobs and ModelDeployments (core/v1; kopf's own event posting is off).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Cluster-scoped reads of kopf: it watches CustomResourceDefinitions to notice when the kubetune
CRDs appear or change. Read-only.
*/}}
{{- define "kubetune.rules.cluster" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
In namespaced mode kopf also lists and watches namespaces to follow the watched ones (without
it, it retries for about a minute at start-up before falling back). Read-only; a cluster-wide
operator does not need it.
*/}}
{{- define "kubetune.rules.namespaceDiscovery" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
