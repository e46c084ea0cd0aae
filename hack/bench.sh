#!/usr/bin/env bash
# The scale benchmark in one command: builds the control plane binaries (first run only, see
# hack/controlplane/build.sh), the operator and the benchmark in release, then runs
# examples/bench/ once per agent count. Each run uses its own kube-apiserver + etcd.
#
# Usage: hack/bench.sh [N ...] [-- BENCH_FLAGS ...]
#   hack/bench.sh                       # 100 and 1000 agents
#   hack/bench.sh 10000 -- --resync 10s # 10000 agents, bench flags after --
# Bench flags: --concurrency, --resync, --poll-interval, --steady, --idle, --client-concurrency,
# --changes, --timeout, --operator-env KEY=VALUE, --out (see `target/release/examples/bench
# --help`; give experiments an --out in another directory so their logs do not overwrite these).
# Results: target/bench/results.json (one entry per N, replaced by a new run of the same N) and
# target/bench/operator-N.log; the figures are also printed as a table.
set -euo pipefail
cd "$(dirname "$0")/.."

counts=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    *[!0-9]*|'') echo "hack/bench.sh: agent counts are numbers, bench flags go after --: $1" >&2; exit 2 ;;
    *) counts+=("$1"); shift ;;
  esac
done
[ ${#counts[@]} -gt 0 ] || counts=(100 1000)

echo "==> control plane binaries"
hack/controlplane/build.sh etcd kube-apiserver
# What the operator binary is built from (HEAD moves while others commit; recorded per run).
PIPECAT_BENCH_SOURCE=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src 2>/dev/null || true)" ]; then
  PIPECAT_BENCH_SOURCE+=" + uncommitted src changes"
fi
export PIPECAT_BENCH_SOURCE
echo "==> cargo build --release (operator and benchmark) at $PIPECAT_BENCH_SOURCE"
cargo build --release --bin pipecat-operator
cargo build --release --example bench

for n in "${counts[@]}"; do
  echo
  echo "==> bench: $n agents"
  target/release/examples/bench --agents "$n" "$@"
done
