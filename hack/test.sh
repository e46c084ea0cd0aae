#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit tests, and the integration and
# end-to-end suites against a real kube-apiserver + etcd (built once from their Go modules and
# cached under ~/.cache/pipecat-operator; see hack/controlplane/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> control plane binaries"
hack/controlplane/build.sh etcd kube-apiserver kube-controller-manager helm

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> cargo deny check licenses bans sources (deny.toml; no advisory database, no network)"
command -v cargo-deny > /dev/null || cargo install --locked cargo-deny
cargo deny --frozen check licenses bans sources

echo "==> a Lua interpreter for the Argo CD health check (tests/argocd.rs runs deploy/argocd/health.lua)"
if ! command -v lua5.1 > /dev/null; then
  # Argo CD runs health checks in gopher-lua, a Lua 5.1.
  if [ "$(id -u)" = 0 ]; then apt-get install -y lua5.1; else sudo apt-get install -y lua5.1; fi
fi

echo "==> kstatus (tests/kstatus.rs runs sigs.k8s.io/cli-utils' kstatus, built from hack/kstatus/)"
hack/kstatus/build.sh

echo "==> promtool (tests/alerts.rs runs Prometheus's promtool on the chart's alerts, built from hack/promtool/)"
hack/promtool/build.sh

echo "==> the emulator against Pipecat Cloud's OpenAPI contract (hack/contract/run.sh: schemathesis, every profile and strict mode)"
mkdir -p target
hack/contract/run.sh > target/contract.log 2>&1 || { tail -n 80 target/contract.log; tail -n 1 target/contract.log; exit 1; }
tail -n 1 target/contract.log

echo "==> the README's first command, end to end (hack/demo.sh --exit)"
hack/demo.sh --exit > target/demo-smoke.log 2>&1 || { cat target/demo-smoke.log; exit 1; }
grep -q "condition met" target/demo-smoke.log
echo "demo: voice-starter reached Ready"

echo "==> cargo test"
mkdir -p target
status=0
cargo test --no-fail-fast --lib --bins --tests --locked -- "$@" 2>&1 | tee target/test.log || status=$?

echo "==> cargo test --doc (the examples in the API docs)"
cargo test --doc --locked -- "$@" 2>&1 | tee -a target/test.log || status=$?
# One closing line for the whole run, summed over every test binary and the doctests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' target/test.log
exit "$status"
