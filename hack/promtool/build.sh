#!/usr/bin/env bash
# Builds (once) and caches `promtool`, Prometheus's own rule checker and rule unit-test runner
# (github.com/prometheus/prometheus/cmd/promtool), for tests/alerts.rs: `promtool check rules` and
# `promtool test rules` over the chart's PrometheusRule. From the module in this directory (a
# `tool` directive, go.sum committed) through the Go module proxy, like hack/kstatus/build.sh;
# cached by Prometheus module version under
#   ${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin/
# Prints the binary's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin
version=$(awk '$1 == "github.com/prometheus/prometheus" { print $2 }' "$here/go.mod")
[ -n "$version" ] || { echo "promtool build: no github.com/prometheus/prometheus in $here/go.mod" >&2; exit 1; }
out="$cache/promtool-$version"
if [ ! -x "$out" ]; then
  command -v go > /dev/null 2>&1 || { echo "promtool build: the Go toolchain is needed" >&2; exit 1; }
  mkdir -p "$cache"
  echo "building promtool $version (first run only, several minutes; cached in $cache)" >&2
  tmp="$out.tmp.$$"
  if ! (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/prometheus/prometheus/cmd/promtool) >&2; then
    rm -f "$tmp"
    echo "promtool build: go build failed (see above)" >&2
    exit 1
  fi
  mv "$tmp" "$out"
fi
echo "$out"
