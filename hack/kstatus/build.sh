#!/usr/bin/env bash
# Builds (once) and caches `kstatus`, a tiny command around kstatus's own code
# (sigs.k8s.io/cli-utils/pkg/kstatus/status, the readiness rules of Flux and kpt): JSON object on
# stdin, {"status", "message"} on stdout. From the module in this directory (go.sum committed)
# through the Go module proxy, like hack/controlplane/build.sh; cached by cli-utils version under
#   ${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin/
# Prints the binary's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin
version=$(awk '$1 == "sigs.k8s.io/cli-utils" { print $2 }' "$here/go.mod")
[ -n "$version" ] || { echo "kstatus build: no sigs.k8s.io/cli-utils in $here/go.mod" >&2; exit 1; }
out="$cache/kstatus-$version"
if [ ! -x "$out" ]; then
  command -v go > /dev/null 2>&1 || { echo "kstatus build: the Go toolchain is needed" >&2; exit 1; }
  mkdir -p "$cache"
  echo "building kstatus $version (first run only; cached in $cache)" >&2
  tmp="$out.tmp.$$"
  if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp" .) >&2; then
    rm -f "$tmp"
    echo "kstatus build: go build failed (see above)" >&2
    exit 1
  fi
  mv "$tmp" "$out"
fi
echo "$out"
