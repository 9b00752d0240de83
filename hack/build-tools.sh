#!/usr/bin/env bash
# Build the local control plane's binaries from the Go module proxy.
#
# Why this exists: there is no Docker engine and no release-page download here, so
# etcd, the Kubernetes control plane, kubectl, kwok and helm are compiled from source
# modules. Each tool is cached under ~/.cache/kubetune/bin/<tool>-<version>/ so only
# the first run pays for the build (15-30 minutes on 2 cores); later runs return at once.
#
# Usage: hack/build-tools.sh            # build whatever is missing, print the bin dir
#        hack/build-tools.sh --env      # same, then print shell assignments of each
#                                       # binary's path (eval "$(hack/build-tools.sh --env)")
# Needs Go (>= 1.24) and the Go module proxy; versions can be overridden by the variables below.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.7}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
CACHE=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}
BIN=$CACHE/bin
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[build-tools] %s\n' "$*" >&2; }

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces ~31 staging modules
# with local paths. A wrapper module requires it and points each staging module at
# its published v0.X.Y tag instead.
build_kubernetes() {
  local out=$BIN/kubernetes-$K8S_VERSION
  if [[ -x $out/kube-apiserver && -x $out/kube-controller-manager && -x $out/kube-scheduler && -x $out/kubectl ]]; then
    return
  fi
  log "building Kubernetes $K8S_VERSION (slow the first time)"
  local work staging minor gomod
  work=$(mktemp -d)
  minor=${K8S_VERSION#v1.}
  staging="v0.${minor}"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module kubetune.local/k8s-build"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -E '^\s+k8s\.io/[a-z-]+ => \./staging/' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local major=1 kminor=${minor%%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$kminor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (
    cd "$work"
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@$K8S_VERSION"
    mkdir -p "$out.tmp"
    go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
  rm -rf "$out" && mv "$out.tmp" "$out" && rm -rf "$work"
}

# etcd's main module also carries local replaces; its server module exports etcdmain,
# so a three-line main package is all the wrapper needs.
build_etcd() {
  local out=$BIN/etcd-$ETCD_VERSION
  [[ -x $out/etcd ]] && return
  log "building etcd $ETCD_VERSION"
  local work
  work=$(mktemp -d)
  cat >"$work/go.mod" <<MOD
module kubetune.local/etcd-build
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$work" && go mod tidy && mkdir -p "$out.tmp" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" .)
  rm -rf "$out" && mv "$out.tmp" "$out" && rm -rf "$work"
}

go_install() {  # name module version
  local out=$BIN/$1-$3
  [[ -x $out/$1 ]] && return
  log "installing $1 $3"
  mkdir -p "$out.tmp"
  GOBIN=$out.tmp go install -trimpath -ldflags "-s -w ${4:-}" "$2@$3"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

print_env() {
  local k8s=$BIN/kubernetes-$K8S_VERSION
  cat <<EOF
KUBE_VERSION=$K8S_VERSION
ETCD_BIN=$BIN/etcd-$ETCD_VERSION/etcd
KWOK_BIN=$BIN/kwok-$KWOK_VERSION/kwok
HELM_BIN=$BIN/helm-$HELM_VERSION/helm
KUBE_APISERVER_BIN=$k8s/kube-apiserver
KUBE_CONTROLLER_MANAGER_BIN=$k8s/kube-controller-manager
KUBE_SCHEDULER_BIN=$k8s/kube-scheduler
KUBECTL_BIN=$k8s/kubectl
EOF
}

case ${1:-} in
  "" | --env) ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
command -v go >/dev/null || { log "error: go is not on PATH"; exit 1; }
mkdir -p "$BIN"
# One build at a time: a second caller waits here, then finds the binaries cached.
exec 8>"$CACHE/.build.lock"
flock 8
build_etcd
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
# helm's own version variable says only "v3.19" unless stamped.
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
build_kubernetes
exec 8>&-
log "tools ready under $BIN"
if [[ ${1:-} == --env ]]; then
  print_env
else
  echo "$BIN"
fi
