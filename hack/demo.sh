#!/usr/bin/env bash
# `make demo`: kubetune doing its whole job, on a laptop with no GPU and no cluster.
#
# Part 1 runs the operator against the local control plane (nodes simulated by kwok: two
# 8xA100 nodes and a CPU node; pods "run" without running anything) and applies the
# quickstart FineTuneJob, whose spec.deploy creates a ModelDeployment: you see both go
# through their phases to Succeeded / Ready. Part 2 runs the same manifest for real on this
# machine with `kubetune run --local`: data cleaning, LoRA training of a tiny model kubetune
# builds, evaluation, export, and a real Triton server answering the smoke-test prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(hack/cluster.sh env)"

NS=kubetune-demo
MANIFEST=examples/quickstart/finetunejob.yaml
LOG=.cluster/logs/operator-demo.log
TIMEOUT=${DEMO_TIMEOUT:-300}
MAX_STEPS=${DEMO_MAX_STEPS:-40}
operator_pid=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
stop_operator() {
  if [[ -n $operator_pid ]] && kill -0 "$operator_pid" 2>/dev/null; then
    kill -TERM "$operator_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$operator_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$operator_pid" 2>/dev/null || true
  fi
  operator_pid=""
}
trap stop_operator EXIT

say "Part 1: the operator on the local control plane ($(kubectl version -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'))"
kubectl get nodes -L nvidia.com/gpu.product
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/finetunejobs.kubetune.dev crd/modeldeployments.kubetune.dev >/dev/null
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kubectl delete pv kubetune-demo-quickstart-data kubetune-demo-quickstart-artifacts --ignore-not-found --wait=true >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl apply -f hack/demo-storage.yaml >/dev/null   # the claims pvc://quickstart-data and pvc://quickstart-artifacts

.venv/bin/kubetune operator --namespace "$NS" >"$LOG" 2>&1 &
operator_pid=$!
echo "operator running (pid $operator_pid, log $LOG)"

# kwok "runs" a pod for 1-2 s; hold the train and evaluate pods a little longer so the
# stand-in for the trainer (hack/kwok_trainer.py) can report progress, metrics and the
# artifact digest through the job's own ServiceAccount, as the real pods do.
kubectl annotate --local -f "$MANIFEST" -o yaml \
  'kubetune.dev/train-pod-annotations={"kwok.x-k8s.io/duration": "6s"}' \
  'kubetune.dev/evaluate-pod-annotations={"kwok.x-k8s.io/duration": "4s"}' | kubectl apply -n "$NS" -f -
.venv/bin/python hack/kwok_trainer.py "$NS" cs-quickstart &
say "Watching the FineTuneJob and its ModelDeployment (timeout ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT)); last=""
while ((SECONDS < deadline)); do
  ftj=$(kubectl get ftj cs-quickstart -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  mdep=$(kubectl get mdep cs-quickstart -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  now="FineTuneJob=${ftj:-<none>} ModelDeployment=${mdep:-<none>}"
  [[ $now != "$last" ]] && printf '  %3ds  %s\n' "$((SECONDS))" "$now" && last=$now
  [[ $ftj == Succeeded && $mdep == Ready ]] && break
  [[ $ftj == Failed || $mdep == Failed ]] && break
  sleep 1
done
echo
kubectl get ftj,mdep -n "$NS"
echo
kubectl get jobs,deployments,services -n "$NS"
stop_operator
if [[ $ftj != Succeeded || $mdep != Ready ]]; then
  echo "demo: expected Succeeded/Ready, got $last; operator log: $LOG" >&2
  exit 1
fi

say "Part 2: the same manifest, for real, on this machine (kubetune run --local, ${MAX_STEPS} steps)"
.venv/bin/kubetune run -f "$MANIFEST" --local --base-model tiny --max-steps "$MAX_STEPS" --workdir .kubetune/runs/demo

say "What next"
cat <<'NEXT'
  kubectl get ftj,mdep -n kubetune-demo -o wide      # the demo's resources (KUBECONFIG=.cluster/kubeconfig)
  kubectl explain finetunejob.spec                   # every field, with its description
  kubectl apply -f examples/ --dry-run=server        # the other examples: QLoRA, 8xA100 ZeRO-3, multi-node, TensorRT-LLM
  .venv/bin/kubetune run -f examples/quickstart/finetunejob.yaml --local --base-model tiny --max-steps 200
  make cluster-down                                  # stop the local control plane (it is left running)
NEXT
