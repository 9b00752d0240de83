{{/*
The permissions of the operator, derived from its code (docs/operations.md, "RBAC", lists
each rule with the reason). The same namespaced rules go into the ClusterRole (all namespaces)
or into one Role per watched namespace (watchNamespaces).

Note on escalation: the operator creates a Role per FineTuneJob that grants get/patch on that
one job's status. Kubernetes lets it only because the operator holds those verbs itself; do
not remove them when trimming rules.
*/}}
{{- define "kubetune.rules.namespaced" -}}
# The custom resources: watched by kopf, which also patches them (finalizers, its progress
# annotations) and their status; ModelDeployments are created from a FineTuneJob's spec.deploy.
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubetune.dev"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch", "create"]
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs/status", "modeldeployments/status"]
  verbs: ["get", "patch"]
# Children of a FineTuneJob (prepare/train/evaluate Jobs, trainer config, per-job identity)
# and of a ModelDeployment (engine-build and smoke-test Jobs, Triton Deployment, Service, HPA,
# engine cache ConfigMap).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are only read, to say why a Job failed (OOMKilled, ImagePullBackOff, ...).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on the custom resources (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Cluster-scoped reads of kopf: it watches CustomResourceDefinitions to notice when the kubetune
CRDs appear or change. Read-only, and nothing else is cluster-wide in namespaced mode.
*/}}
{{- define "kubetune.rules.cluster" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
