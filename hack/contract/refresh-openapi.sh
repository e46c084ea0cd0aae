#!/usr/bin/env bash
# Re-downloads Pipecat Cloud's official OpenAPI description into contract/pipecat-cloud/openapi.json:
# the file api-reference/pipecat-cloud/rest-reference/openapi.json of the repository
# pipecat-ai/docs at a commit (default: the one contract/pipecat-cloud/README.md names), with every
# prose `description` left out (a response object's required one is kept, empty), written
# pretty-printed with one space of indentation. Review the diff, then update the commit and date in
# contract/pipecat-cloud/README.md and docs/EMULATOR.md, and run hack/contract/run.sh.
#
#   hack/contract/refresh-openapi.sh            # the pinned commit
#   hack/contract/refresh-openapi.sh main       # the newest version
#   hack/contract/refresh-openapi.sh 1a2b3c4d   # another commit
set -euo pipefail
cd "$(dirname "$0")/../.."

commit="${1:-a9deaa9}"
url="https://raw.githubusercontent.com/pipecat-ai/docs/${commit}/api-reference/pipecat-cloud/rest-reference/openapi.json"
out=contract/pipecat-cloud/openapi.json
tmp="$(mktemp)"
trap 'rm -f "$tmp" "$tmp.out"' EXIT

echo "downloading $url" >&2
curl --fail --silent --show-error --location --retry 3 -o "$tmp" "$url"

python3 - "$tmp" "$tmp.out" <<'PY'
import json
import sys

source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as f:
    spec = json.load(f)


def strip(node, in_responses=False):
    """Drops prose: every string `description`, except the one a response object must have
    (OpenAPI 3.0 requires it), which is kept empty. A schema property that happens to be named
    `description` is an object, not a string, and is kept."""
    if isinstance(node, list):
        return [strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description" and isinstance(value, str):
            if in_responses:
                out[key] = ""
            continue
        # The children of a `responses` map are response objects.
        out[key] = strip(value) if key != "responses" else {
            status: strip(response, in_responses=True) if isinstance(response, dict) else response
            for status, response in value.items()
        }
    return out


spec = strip(spec)
with open(target, "w", encoding="utf-8") as f:
    json.dump(spec, f, indent=1, ensure_ascii=False)
PY

mv "$tmp.out" "$out"
echo "wrote $out from pipecat-ai/docs@${commit}; review with: git diff -- $out" >&2
