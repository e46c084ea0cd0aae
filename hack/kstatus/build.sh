#!/usr/bin/env bash
# Builds (once) and caches `kstatus`, a tiny command around kstatus's own code
# (sigs.k8s.io/cli-utils/pkg/kstatus/status, the readiness rules of Flux and kpt): JSON object on
# stdin, {"status", "message"} on stdout. From the module in this directory, cached by cli-utils
# version (hack/lib/gotool.sh). Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../lib/gotool.sh" kstatus "$here" sigs.k8s.io/cli-utils .
