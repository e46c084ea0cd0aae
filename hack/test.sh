#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit tests, and the integration and
# end-to-end suites against a real kube-apiserver + etcd (built once from their Go modules and
# cached under ~/.cache/pipecat-operator; see hack/controlplane/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> control plane binaries"
hack/controlplane/build.sh etcd kube-apiserver helm

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> the README's first command, end to end (hack/demo.sh --exit)"
hack/demo.sh --exit > target/demo-smoke.log 2>&1 || { cat target/demo-smoke.log; exit 1; }
grep -q "condition met" target/demo-smoke.log
echo "demo: voice-starter reached Ready"

echo "==> cargo test"
cargo test --all-targets --locked -- "$@"
