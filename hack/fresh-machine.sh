#!/usr/bin/env bash
# Runs the README's two first commands as a new machine would, and prints the wall time of
# every step: a clean clone of the current commit (no target/), with every cache the suite fills
# pointed at empty temporary directories (cargo's registry and git caches through CARGO_HOME, the
# project cache ~/.cache/pipecat-operator through PIPECAT_OPERATOR_CACHE, GOMODCACHE, GOCACHE and
# pip's cache). The toolchains themselves (Rust through rustup, Go, kubectl) and Debian packages
# already installed stay. Long (a cold run builds the whole control plane): not part of
# hack/test.sh.
#
# Usage: hack/fresh-machine.sh [--keep]     (--keep leaves the temporary directory for a look)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=false; [ "${1:-}" = --keep ] && keep=true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipecat-fresh.XXXXXX")
cleanup() { $keep && echo "left in $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT

rustup_home=$(rustup show home 2>/dev/null || echo "$HOME/.rustup")
mkdir -p "$tmp/cargo-home" "$tmp/cache" "$tmp/gomod" "$tmp/gocache" "$tmp/pip"
# A new machine's CARGO_HOME holds the rustup proxies and no registry: keep the proxies (on PATH
# from the old home), and nothing else.
export RUSTUP_HOME=$rustup_home
export CARGO_HOME=$tmp/cargo-home
export PATH="$CARGO_HOME/bin:$PATH"
export PIPECAT_OPERATOR_CACHE=$tmp/cache
export GOMODCACHE=$tmp/gomod GOCACHE=$tmp/gocache
export PIP_CACHE_DIR=$tmp/pip
unset KUBEBUILDER_ASSETS CARGO_TARGET_DIR

echo "fresh machine in $tmp: a clone of $(git -C "$repo" rev-parse --short HEAD)"
git clone --quiet --no-hardlinks "$repo" "$tmp/repo"
git -C "$tmp/repo" checkout --quiet "$(git -C "$repo" rev-parse HEAD)"
cd "$tmp/repo"

export STEPS_FILE=$tmp/steps.tsv
: > "$STEPS_FILE"
. hack/lib/steps.sh
started=$SECONDS
status=0
step "README 1: hack/demo.sh --exit (builds etcd, kube-apiserver, the demo)" \
  bash -c 'hack/demo.sh --exit > "$0/demo.log" 2>&1 || { tail -n 40 "$0/demo.log"; exit 1; }' "$tmp" || status=$?
demo_steps=$(cat "$STEPS_FILE")
step "README 2: hack/test.sh (the whole suite)" bash -c 'hack/test.sh > "$0/test.log" 2>&1 || { tail -n 80 "$0/test.log"; exit 1; }' "$tmp" || status=$?
suite_line=$(tail -n 1 "$STEPS_FILE")
total=$((SECONDS - started))

echo
echo "fresh machine: per step (wall time)"
printf '%s\n' "$demo_steps" > "$tmp/table.tsv"
# hack/test.sh's own steps, from its table (its go: steps ran in the background).
[ -f target/test-steps.tsv ] && sed 's/^/  test.sh: /' target/test-steps.tsv >> "$tmp/table.tsv"
printf '%s\n' "$suite_line" >> "$tmp/table.tsv"
STEPS_FILE=$tmp/table.tsv step_table
echo "  total: ${total}s ($((total / 60)) min $((total % 60)) s)"
grep -E '^total: [0-9]+ passed' "$tmp/test.log" || true
exit "$status"
