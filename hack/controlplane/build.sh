#!/usr/bin/env bash
# Builds (once) and caches the control plane binaries the tests and the demo run:
# kube-apiserver, kube-controller-manager and etcd (envtest-style: no kubelet, no scheduler) and
# helm. kube-apiserver and kube-controller-manager come from the same k8s.io/kubernetes module
# (one wrapper module, hack/controlplane/kube-apiserver/, lists both as tools).
# Each comes from its release's Go module through the Go module proxy, with CGO off and the
# release version stamped in, and is cached by version under
#   ${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin/
# When KUBEBUILDER_ASSETS names a directory holding kube-apiserver, kube-controller-manager or
# etcd, those are used.
#
# Usage: hack/controlplane/build.sh [kube-apiserver|kube-controller-manager|etcd|helm ...]
# Prints one line per binary: NAME=PATH  (suitable for `eval`).
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin
mkdir -p "$cache"

die() { echo "control plane build: $*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (go 1.26 or newer) is needed to build the control plane binaries; install it from https://go.dev/dl/ or your distribution, or set KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd"
}

# build NAME VERSION MODULE_DIR PACKAGE LDFLAGS
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=$5
  local out="$cache/$name-$version"
  if [ ! -x "$out" ]; then
    need_go
    echo "building $name $version (first run only; cached in $cache)" >&2
    local tmp="$out.tmp.$$"
    if ! (cd "$here/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") >&2; then
      rm -f "$tmp"
      die "building $name $version failed (see the Go output above)"
    fi
    mv "$tmp" "$out"
  fi
  echo "$name=$out"
}

# kube-apiserver and kube-controller-manager in one `go build` when neither is cached: one action
# graph compiles the packages they share once and overlaps one's link with the other's compile.
build_k8s_pair() {
  local dir=$cache/k8s-pair.tmp.$$
  [ ! -x "$cache/kube-apiserver-$K8S_VERSION" ] && [ ! -x "$cache/kube-controller-manager-$K8S_VERSION" ] || return 0
  need_go
  echo "building kube-apiserver and kube-controller-manager $K8S_VERSION (first run only; cached in $cache)" >&2
  mkdir -p "$dir"
  if ! (cd "$here/kube-apiserver" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$(k8s_ldflags)" -o "$dir/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2; then
    rm -rf "$dir"
    die "building kube-apiserver and kube-controller-manager $K8S_VERSION failed (see the Go output above)"
  fi
  mv "$dir/kube-apiserver" "$cache/kube-apiserver-$K8S_VERSION"
  mv "$dir/kube-controller-manager" "$cache/kube-controller-manager-$K8S_VERSION"
  rmdir "$dir"
}

k8s_ldflags() {
  local v=${K8S_VERSION#v} major minor
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  local f=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    f+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$f"
}

assets=${KUBEBUILDER_ASSETS:-}
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube-apiserver kube-controller-manager helm)
case " ${want[*]} " in
  *" kube-apiserver "*" kube-controller-manager "*|*" kube-controller-manager "*" kube-apiserver "*)
    if [ -z "$assets" ] || { [ ! -x "$assets/kube-apiserver" ] && [ ! -x "$assets/kube-controller-manager" ]; }; then
      build_k8s_pair
    fi ;;
esac
for w in "${want[@]}"; do
  case $w in
    kube-apiserver|kube-controller-manager|etcd)
      if [ -n "$assets" ] && [ -x "$assets/$w" ]; then echo "$w=$assets/$w"; continue; fi
      if [ $w = etcd ]; then
        build etcd "$ETCD_VERSION" etcd . "-s -w"
      else
        build "$w" "$K8S_VERSION" kube-apiserver "k8s.io/kubernetes/cmd/$w" "$(k8s_ldflags)"
      fi ;;
    helm)
      if command -v helm >/dev/null 2>&1 && [ -n "${PIPECAT_USE_SYSTEM_HELM:-}" ]; then echo "helm=$(command -v helm)"; continue; fi
      build helm "$HELM_VERSION" helm helm.sh/helm/v3/cmd/helm \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) die "unknown binary '$w' (expected kube-apiserver, kube-controller-manager, etcd or helm)" ;;
  esac
done
