#!/usr/bin/env bash
# Builds (once) and caches a Go command from a wrapper module under hack/ (go.sum committed,
# through the Go module proxy, CGO off), cached by the version of the module it wraps under
#   ${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin/NAME-VERSION
# and prints the binary's path. Used by hack/kstatus/build.sh and hack/promtool/build.sh.
#
# Usage: [GOTOOL_TAGS=tag,...] hack/lib/gotool.sh NAME MODULE_DIR VERSIONED_MODULE PACKAGE
#   (VERSIONED_MODULE: the go.mod requirement whose version names the cache entry; GOTOOL_TAGS:
#   Go build tags, e.g. to leave out what the tests never run)
set -euo pipefail

name=$1 dir=$2 module=$3 pkg=$4
cache=${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/bin
version=$(awk -v m="$module" '$1 == m { print $2 }' "$dir/go.mod")
[ -n "$version" ] || { echo "$name build: no $module in $dir/go.mod" >&2; exit 1; }
out="$cache/$name-$version"
if [ ! -x "$out" ]; then
  command -v go > /dev/null 2>&1 || { echo "$name build: the Go toolchain is needed" >&2; exit 1; }
  mkdir -p "$cache"
  echo "building $name $version (first run only; cached in $cache)" >&2
  tmp="$out.tmp.$$"
  if ! (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -tags "${GOTOOL_TAGS:-}" -ldflags "-s -w" -o "$tmp" "$pkg") >&2; then
    rm -f "$tmp"
    echo "$name build: go build failed (see above)" >&2
    exit 1
  fi
  mv "$tmp" "$out"
fi
echo "$out"
