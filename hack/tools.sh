#!/usr/bin/env bash
# Builds (once, then cached under ${PIPECAT_OPERATOR_CACHE:-~/.cache/pipecat-operator}/bin) every
# Go tool the suite and the demo run: etcd, kube-apiserver, kube-controller-manager and helm
# (hack/controlplane/build.sh), kstatus (hack/kstatus/) and promtool (hack/promtool/). One after
# the other, each step timed into $STEPS_FILE: hack/test.sh runs this in the background while
# cargo compiles, so the two fill each other's idle time on a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/lib/steps.sh

step "go: etcd" hack/controlplane/build.sh etcd
step "go: kube-apiserver, kube-controller-manager" hack/controlplane/build.sh kube-apiserver kube-controller-manager
step "go: helm" hack/controlplane/build.sh helm
step "go: kstatus" hack/kstatus/build.sh
step "go: promtool" hack/promtool/build.sh
