#!/usr/bin/env bash
# Builds (once) and caches `promtool`, Prometheus's own rule checker and rule unit-test runner
# (github.com/prometheus/prometheus/cmd/promtool), for tests/packaging/alerts.rs. From the module in
# this directory (a `tool` directive), cached by Prometheus module version (hack/lib/gotool.sh; the
# first build takes several minutes). Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GOTOOL_TAGS=remove_all_sd exec "$here/../lib/gotool.sh" promtool "$here" github.com/prometheus/prometheus \
  github.com/prometheus/prometheus/cmd/promtool
