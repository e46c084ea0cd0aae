#!/usr/bin/env bash
# The one-command demo: builds what is needed (first run: the control plane binaries from their
# Go modules, ~15-25 min on 2 cores; then cached), starts kube-apiserver + etcd on loopback, the
# Pipecat Cloud emulator and the operator, applies examples/secret-sets.yaml (the agent with its
# secrets from Kubernetes Secrets), waits for Ready, then rotates a key and shows the redeploy.
# Pass --exit to stop right after showing the result.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/controlplane/build.sh etcd kube-apiserver >/dev/null
exec cargo run --quiet --example demo -- "$@"
