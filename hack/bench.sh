#!/usr/bin/env bash
# The scale benchmark in one command: builds the control plane binaries (first run only, see
# hack/controlplane/build.sh), the operator and the benchmark in release, then runs
# examples/bench/ once per agent count. Each run uses its own kube-apiserver + etcd.
#
# Usage: hack/bench.sh [N | SCENARIO ...] [-- BENCH_FLAGS ...]
#   hack/bench.sh                       # 100 and 1000 agents
#   hack/bench.sh 10000 -- --resync 10s # 10000 agents, bench flags after --
#   hack/bench.sh budget-200 budget-10k # the API-budget scenarios (docs/PERFORMANCE.md)
# Scenarios (an agent count plus bench flags; flags after -- are added to every run):
#   budget-200  200 agents, then the operator restarted 5 times with --api-rate-limit 4
#               --api-burst 4 --resync-interval 20s, one spec.image change 25 s after each
#               restart: patch -> update call, every time
#   budget-10k  10000 agents, then the operator restarted with --api-rate-limit 10 against an
#               emulator answering in 50 ms, 50 spec changes 25 s into its start-up pass:
#               p50/p99/max patch -> update, the most calls in any second
#   scale-30k   30000 agents (cold convergence may take half an hour here)
# Bench flags: --concurrency, --resync, --poll-interval, --steady, --idle, --client-concurrency,
# --changes, --timeout, --operator-env KEY=VALUE, --operator-wrapper CMD (e.g. "heaptrack -o
# FILE": a heap profile), --out (see `target/release/examples/bench --help`; give experiments an
# --out in another directory so their logs do not overwrite these).
# Results: target/bench/results.json (one entry per N, replaced by a new run of the same N) and
# target/bench/operator-N.log; the figures are also printed as a table.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each run: "N FLAGS..." (word-split on purpose).
runs=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    budget-200) runs+=("200 --budget-rate 4 --budget-burst 4 --budget-resync 20s --budget-wait 25s --budget-changes 1 --budget-repeats 5 --steady 35s"); shift ;;
    budget-10k) runs+=("10000 --budget-rate 10 --budget-latency 50ms --budget-wait 25s --budget-changes 50 --budget-spacing 200ms --budget-repeats 1"); shift ;;
    scale-30k) runs+=("30000 --timeout 60m"); shift ;;
    *[!0-9]*|'') echo "hack/bench.sh: agent counts are numbers or scenario names (budget-200, budget-10k, scale-30k), bench flags go after --: $1" >&2; exit 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
[ ${#runs[@]} -gt 0 ] || runs=(100 1000)

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

for run in "${runs[@]}"; do
  read -r -a words <<<"$run"
  echo
  echo "==> bench: ${words[0]} agents ${words[*]:1}"
  target/release/examples/bench --agents "${words[@]}" "$@"
done
