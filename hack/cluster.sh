#!/usr/bin/env bash
# Run a real, local Kubernetes control plane for development and tests.
#
# Why this exists: kubetune's operator, charts and examples must be checked against a
# real API server (admission, RBAC, CRD validation, Jobs, Deployments), but there is no
# Docker engine, no kubelet and no GPU here. So this script starts etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok as plain processes on 127.0.0.1;
# kwok plays the kubelets of fake nodes (two 8x A100 GPU nodes and one CPU node) and
# drives pod lifecycles (see hack/kwok/README.md for the labels that make pods fail).
#
# Usage:
#   hack/cluster.sh up       start (or reuse) the cluster, wait until it is ready
#   hack/cluster.sh down     stop the processes that `up` started
#   hack/cluster.sh status   say what runs; exit 0 only when the cluster is healthy
#   hack/cluster.sh env      print exports: eval "$(hack/cluster.sh env)"
#   hack/cluster.sh clean    down, then delete .cluster/ (certificates included)
#
# Everything lives under .cluster/ in the repository root: pki/ (CA, serving and
# service-account keys, static tokens), kubeconfig (admin), logs/<component>.log,
# pids/<component>.pid and etcd/ (wiped at every `up`: each cluster starts empty).
# Ports (override with the environment): KUBETUNE_ETCD_PORT=12379,
# KUBETUNE_ETCD_PEER_PORT=12380, KUBETUNE_APISERVER_PORT=16443,
# KUBETUNE_KCM_PORT=16257, KUBETUNE_SCHEDULER_PORT=16259.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${KUBETUNE_CLUSTER_DIR:-$ROOT/.cluster}
PKI=$STATE/pki
ETCD_PORT=${KUBETUNE_ETCD_PORT:-12379}
ETCD_PEER_PORT=${KUBETUNE_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${KUBETUNE_APISERVER_PORT:-16443}
KCM_PORT=${KUBETUNE_KCM_PORT:-16257}
SCHEDULER_PORT=${KUBETUNE_SCHEDULER_PORT:-16259}
READY_TIMEOUT=${KUBETUNE_CLUSTER_TIMEOUT:-180}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
SA_ISSUER=https://kubernetes.default.svc.cluster.local
# Start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The settings of the running cluster win over the environment, so that `status`
# and `down` act on what `up` started even when called with other variables.
load_env() {
  if [[ -f $STATE/env ]]; then
    # shellcheck disable=SC1091
    source "$STATE/env"
  fi
}

# Binaries come from hack/build-tools.sh (built once, cached under ~/.cache/kubetune).
load_tools() {
  eval "$("$ROOT/hack/build-tools.sh" --env)"
}

pid_file() { echo "$STATE/pids/$1.pid"; }

binary_of() {
  case $1 in
    etcd) echo "$ETCD_BIN" ;;
    kube-apiserver) echo "$KUBE_APISERVER_BIN" ;;
    kube-controller-manager) echo "$KUBE_CONTROLLER_MANAGER_BIN" ;;
    kube-scheduler) echo "$KUBE_SCHEDULER_BIN" ;;
    kwok) echo "$KWOK_BIN" ;;
  esac
}

# True when pid runs binary <name> with an argument under our state directory, i.e. it
# is a process this script started and not an unrelated one that reused the pid.
is_ours() {  # pid name
  local pid=$1 name=$2 a
  local -a args=()
  [[ -r /proc/$pid/cmdline ]] || return 1
  mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || return 1
  ((${#args[@]} > 0)) && [[ ${args[0]##*/} == "$name" ]] || return 1
  for a in "${args[@]:1}"; do
    [[ $a == *"$STATE/"* ]] && return 0
  done
  return 1
}

running_pid() {  # name -> prints pid when the component runs
  local f pid
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" "$1" && echo "$pid"
}

# Start a component in its own session (so a Ctrl-C in the caller's terminal or a
# pytest interrupt does not reach it); the inner shell writes its own pid, then execs.
start() {  # name binary args...
  local name=$1
  shift
  local pidf logf
  pidf=$(pid_file "$name")
  logf=$STATE/logs/$name.log
  rm -f "$pidf"
  printf -- '--- %s: starting %s\n' "$(date -Is)" "$*" >"$logf"
  # fd 9 holds the lock of this script: the daemons must not inherit it.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$logf" 2>&1 9>&- &
  # Wait for the exec, not just the pid file: until then /proc/<pid>/cmdline is the inner bash,
  # and running_pid (which checks the command) would report the component as exited.
  local i
  for i in $(seq 50); do
    [[ -s $pidf ]] && is_ours "$(<"$pidf")" "$name" && return 0
    sleep 0.1
  done
  die "$name did not start (see $logf)"
}

port_free() {  # port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# GET over HTTPS without curl (openssl is needed for the certificates anyway).
https_status() {  # host:port path -> prints the HTTP status line and body
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" |
    timeout 5 openssl s_client -quiet -connect "$1" 2>/dev/null || true
}

healthz_ok() {  # port
  https_status "127.0.0.1:$1" /healthz | grep -q '^ok'
}

etcd_ok() {
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT" &&
    printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3) 2>/dev/null || return 1
  grep -q '"health":"true"' <<<"$reply"
}

kubectl_() { "$KUBECTL_BIN" --kubeconfig "$STATE/kubeconfig" "$@"; }

apiserver_ready() { kubectl_ get --raw=/readyz >/dev/null 2>&1; }

# Wait until <check> passes; fail early, with the log tail, when <name> has exited.
wait_until() {  # name description check...
  local name=$1 what=$2
  shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $name ]] && ! running_pid "$name" >/dev/null; then
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $STATE/logs/$name.log)"
    fi
    ((SECONDS < deadline)) || die "timed out after ${READY_TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

random_token() { openssl rand -hex 24; }

# CA, apiserver serving certificate, service-account key pair and static tokens.
# Generated once and kept, so kubeconfigs stay valid across down/up.
make_pki() {
  [[ -f $PKI/.complete ]] && return
  log "generating certificates and tokens under $PKI"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=kubetune-local-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub
    {
      echo "$(random_token),kubetune-admin,kubetune-admin,\"system:masters\""
      echo "$(random_token),system:kube-controller-manager,system:kube-controller-manager"
      echo "$(random_token),system:kube-scheduler,system:kube-scheduler"
      echo "$(random_token),kwok-controller,kwok-controller,\"system:masters\""
    } >tokens.csv
    rm -f apiserver.csr ca.srl
    touch .complete
  )
}

token_of() { awk -F, -v u="$1" '$2 == u {print $1}' "$PKI/tokens.csv"; }

write_kubeconfig() {  # file user
  local ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  (
    umask 077
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubetune-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $(token_of "$2")
contexts:
- name: kubetune-local
  context:
    cluster: kubetune-local
    user: $2
current-context: kubetune-local
EOF
  )
}

write_env() {
  cat >"$STATE/env" <<EOF
# Written by hack/cluster.sh up; read by cluster.sh and tests/support/cluster.py.
KUBECONFIG=$STATE/kubeconfig
KUBE_SERVER=https://127.0.0.1:$APISERVER_PORT
KUBE_VERSION=$KUBE_VERSION
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
ETCD_BIN=$ETCD_BIN
KUBE_APISERVER_BIN=$KUBE_APISERVER_BIN
KUBE_CONTROLLER_MANAGER_BIN=$KUBE_CONTROLLER_MANAGER_BIN
KUBE_SCHEDULER_BIN=$KUBE_SCHEDULER_BIN
KUBECTL_BIN=$KUBECTL_BIN
KWOK_BIN=$KWOK_BIN
HELM_BIN=$HELM_BIN
EOF
}

count_running() {
  local n=0 c
  for c in "${COMPONENTS[@]}"; do
    running_pid "$c" >/dev/null && n=$((n + 1))
  done
  echo "$n"
}

cmd_up() {
  local t0=$EPOCHREALTIME
  mkdir -p "$STATE/pids" "$STATE/logs"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another cluster.sh holds $STATE/.lock"

  local n
  n=$(count_running)
  if ((n == ${#COMPONENTS[@]})); then
    load_env
    if apiserver_ready; then
      log "cluster already running; reusing it (kubeconfig: $STATE/kubeconfig)"
      return 0
    fi
    die "all components run but the API server is not ready; see $STATE/logs, or run: hack/cluster.sh down"
  elif ((n > 0)); then
    cmd_status >&2 || true
    die "cluster is partially running; run: hack/cluster.sh down (then up)"
  fi

  load_tools
  local port
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"; do
    port_free "$port" || die "port $port on 127.0.0.1 is in use by another process (override with KUBETUNE_*_PORT)"
  done
  make_pki
  write_kubeconfig "$STATE/kubeconfig" kubetune-admin
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" system:kube-controller-manager
  write_kubeconfig "$STATE/kube-scheduler.kubeconfig" system:kube-scheduler
  write_kubeconfig "$STATE/kwok.kubeconfig" kwok-controller
  write_env
  rm -rf "$STATE/etcd"
  trap 'if (($? != 0)); then log "start-up failed; stopping what was started"; stop_all; fi' EXIT

  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  start etcd "$ETCD_BIN" --name=kubetune --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="kubetune=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync \
    --quota-backend-bytes=2147483648 --log-level=warn
  wait_until etcd "etcd /health" etcd_ok

  log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
  start kube-apiserver "$KUBE_APISERVER_BIN" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --cert-dir="$STATE/certs/kube-apiserver" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction,PodSecurity \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --profiling=false --v=1
  wait_until kube-apiserver "kube-apiserver /readyz" apiserver_ready

  log "starting kube-controller-manager, kube-scheduler and kwok"
  start kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/certs/kube-controller-manager" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --profiling=false --v=1
  start kube-scheduler "$KUBE_SCHEDULER_BIN" \
    --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$STATE/certs/kube-scheduler" \
    --leader-elect=false --profiling=false --v=1
  local stages
  stages=$(printf '%s,' "$ROOT"/hack/kwok/stage-*.yaml)
  start kwok "$KWOK_BIN" --kubeconfig="$STATE/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr=10.244.0.1/16 --config="${stages%,}"

  kubectl_ apply -f "$ROOT/hack/kwok/nodes.yaml" >/dev/null
  wait_until kwok "the fake nodes to be Ready" \
    kubectl_ wait --for=condition=Ready node -l type=kwok --timeout=2s
  wait_until kube-controller-manager "kube-controller-manager /healthz" healthz_ok "$KCM_PORT"
  wait_until kube-scheduler "kube-scheduler /healthz" healthz_ok "$SCHEDULER_PORT"
  # Pods need their namespace's "default" ServiceAccount, made by the controller manager.
  wait_until kube-controller-manager "the default ServiceAccount" \
    kubectl_ get serviceaccount default --namespace=default
  trap - EXIT

  local took
  took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  log "cluster ready in ${took}s: Kubernetes $KUBE_VERSION at https://127.0.0.1:$APISERVER_PORT"
  log "use it with: export KUBECONFIG=$STATE/kubeconfig   (or: eval \"\$(hack/cluster.sh env)\")"
}

stop_one() {  # name
  local name=$1 f pid i
  f=$(pid_file "$name")
  [[ -f $f ]] || return 0
  if pid=$(running_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
      is_ours "$pid" "$name" || break
      sleep 0.1
    done
    if is_ours "$pid" "$name"; then
      log "$name (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# Processes started from our state directory with one of our binaries but without a
# live pid file (e.g. an `up` killed half-way): stop them too, so nothing is left.
stop_strays() {
  local p pid c argv0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    { IFS= read -r -d '' argv0 <"$p/cmdline"; } 2>/dev/null || continue
    for c in "${COMPONENTS[@]}"; do
      if [[ ${argv0##*/} == "$c" ]] && is_ours "$pid" "$c"; then
        log "stopping stray $c (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done
  done
}

stop_all() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_one "${COMPONENTS[i]}"
  done
  stop_strays
}

cmd_down() {
  [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  mkdir -p "$STATE/pids"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another cluster.sh holds $STATE/.lock"
  stop_all
  log "cluster stopped"
}

cmd_status() {
  load_env
  local c pid healthy=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(running_pid "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      healthy=1
    fi
  done
  if ((healthy == 0)) && [[ -n ${KUBECTL_BIN:-} ]] && apiserver_ready; then
    printf '%-24s ready at %s (Kubernetes %s)\n' "api" "${KUBE_SERVER:-}" "${KUBE_VERSION:-}"
    kubectl_ get nodes -L nvidia.com/gpu.product 2>&1 || healthy=1
  elif ((healthy == 0)); then
    printf '%-24s not ready\n' "api"
    healthy=1
  fi
  return "$healthy"
}

cmd_env() {
  [[ -f $STATE/env ]] || die "no cluster state; run: hack/cluster.sh up"
  load_env
  printf 'export KUBECONFIG=%q\n' "$STATE/kubeconfig"
  # shellcheck disable=SC2016 # $PATH is for the caller's shell to expand
  printf 'export PATH=%q:"$PATH"\n' "$(dirname "$KUBECTL_BIN"):$(dirname "$HELM_BIN")"
}

cmd_clean() {
  cmd_down
  rm -rf "$STATE"
  log "removed $STATE"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  clean) cmd_clean ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
