#!/usr/bin/env bash
# Property-based contract tests of the Pipecat Cloud emulator against Pipecat's official OpenAPI
# description (contract/pipecat-cloud/openapi.json): schemathesis generates requests from the spec
# for every operation the emulator serves (agents, secret sets, regions, starting a session) and
# checks each answer's status code, content type and body schema, and that none is a server error.
# It runs once per answer profile (full, seed, rewriting) and once in strict mode, where the
# emulator also validates every request and answer itself and must journal no violation.
#
# schemathesis runs from a virtualenv of its own, made once from PyPI with exact pins
# (hack/contract/requirements.txt) under
#   ${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}/venv-schemathesis-VERSION
# The spec's own gaps that the tests tolerate are in contract/pipecat-cloud/baseline.toml.
#
# Knobs: CONTRACT_MAX_EXAMPLES (default 50 per operation and phase), CONTRACT_SEED (default 20260731).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
cache="${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}"
venv="$cache/venv-schemathesis-$SCHEMATHESIS_VERSION"
max_examples="${CONTRACT_MAX_EXAMPLES:-50}"
seed="${CONTRACT_SEED:-20260731}"
key="pk_contract_test_key"
started=$SECONDS

if [ ! -f "$venv/.complete" ]; then
  echo "contract: making $venv (schemathesis $SCHEMATHESIS_VERSION, exact pins)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -r hack/contract/requirements.txt
  "$venv/bin/pip" check --disable-pip-version-check > /dev/null
  touch "$venv/.complete"
fi
"$venv/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"

cargo build --locked --quiet -p pipecat-cloud-emulator
emulator="${CARGO_TARGET_DIR:-target}/debug/pipecat-cloud-emulator"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The spec, plus the statuses baseline.toml tolerates (the vendored file is not changed); and for
# strict mode, a copy whose request schemas are closed as strict mode reads them (no unknown
# field wherever a schema lists its properties), so that every valid request generated is one
# strict mode accepts and the emulator must journal no violation at all.
"$venv/bin/python" - contract/pipecat-cloud/openapi.json contract/pipecat-cloud/baseline.toml \
  "$work/openapi.json" "$work/openapi-strict.json" << 'PY'
import json
import sys
import tomllib

spec_path, baseline_path, out_path, strict_path = sys.argv[1:]
with open(spec_path, encoding="utf-8") as f:
    spec = json.load(f)
with open(baseline_path, "rb") as f:
    baseline = tomllib.load(f)
operations = {
    op["operationId"]: op
    for item in spec["paths"].values()
    for op in item.values()
    if isinstance(op, dict) and "operationId" in op
}
for gap in baseline.get("undocumented-status", []):
    if not gap.get("reason", "").strip():
        sys.exit(f"baseline.toml: status {gap['status']} has no reason")
    for op_id in gap["operations"]:
        responses = operations[op_id]["responses"]
        status = str(gap["status"])
        if status in responses:
            sys.exit(f"baseline.toml: {op_id} already documents {status}: remove it from the baseline")
        responses[status] = {
            "description": "",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(spec, f)


def resolve(schema):
    while isinstance(schema, dict) and "$ref" in schema:
        node = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def close(schema, seen):
    schema = resolve(schema)
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
        for prop in schema["properties"].values():
            close(prop, seen)
    if isinstance(schema.get("items"), dict):
        close(schema["items"], seen)
    for key in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(key, []):
            close(branch, seen)


seen = set()
for op in operations.values():
    body = resolve(op.get("requestBody", {}))
    for media in body.get("content", {}).values():
        close(media.get("schema", {}), seen)
with open(strict_path, "w", encoding="utf-8") as f:
    json.dump(spec, f)
PY

private_ops=(createService listServices getService updateService deleteService listRegions
  listSecretSets getSecretSet upsertSecretSet deleteSecretSet deleteSecretFromSet)
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance

# Starts the emulator with "$@" on a free loopback port (its output in $work/NAME.*); sets $pid
# and $url.
start_emulator() {
  local name="$1"
  shift
  "$emulator" --listen 127.0.0.1:0 --api-key "$key" --ready-delay 0 --reconcile-delay 0 \
    --secret-ready-delay 300ms "$@" > "$work/$name.stdout" 2> "$work/$name.stderr" &
  pid=$!
  url=""
  for _ in $(seq 100); do
    url="$(sed -n 's/^pipecat-cloud-emulator listening on //p' "$work/$name.stdout" 2> /dev/null)"
    [ -n "$url" ] && return 0
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  cat "$work/$name.stderr" >&2
  echo "contract: FAIL: the emulator did not start" >&2
  exit 1
}

stop_emulator() {
  kill "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  pid=""
}

# schemathesis with spec $1 against base URL $2 for the operation ids that follow.
schemathesis() {
  local spec="$1" base="$2"
  shift 2
  local include=()
  for op in "$@"; do include+=(--include-operation-id "$op"); done
  # From the scratch directory: schemathesis keeps its own files (.schemathesis/) where it runs.
  (cd "$work" && "$venv/bin/schemathesis" run "$spec" --url "$base" "${include[@]}" \
    --header "Authorization: Bearer $key" --checks "$checks" --mode positive \
    --phases examples,coverage,fuzzing --seed "$seed" --max-examples "$max_examples" \
    --workers 2 --no-shrink --request-timeout 10 --suppress-health-check all \
    --warnings off --output-truncate true)
}

failed=()
for profile in full seed rewriting strict; do
  echo "==> contract: profile $profile" >&2
  spec="$work/openapi.json"
  if [ "$profile" = strict ]; then
    start_emulator "$profile" --profile full --strict
    spec="$work/openapi-strict.json"
  else
    start_emulator "$profile" --profile "$profile"
  fi
  ok=true
  schemathesis "$spec" "$url/v1" "${private_ops[@]}" >&2 || ok=false
  # startService's server is /v1/public (the spec's path is /{agentName}/start).
  schemathesis "$spec" "$url/v1/public" startService >&2 || ok=false
  if [ "$profile" = strict ]; then
    violations="$(curl -fsS "$url/_emulator/journal/counts" |
      "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["violations"])')" ||
      violations="unknown (the emulator did not answer)"
    if [ "$violations" != 0 ]; then
      echo "contract: strict mode journaled $violations violation(s):" >&2
      curl -fsS "$url/_emulator/violations" >&2 || true
      echo >&2
      ok=false
    fi
  fi
  stop_emulator
  $ok || failed+=("$profile")
done

elapsed=$((SECONDS - started))
if [ ${#failed[@]} -eq 0 ]; then
  echo "contract: PASS (schemathesis $SCHEMATHESIS_VERSION, profiles full, seed, rewriting, strict; ${elapsed}s)"
else
  echo "contract: FAIL in profile(s): ${failed[*]} (${elapsed}s)"
  exit 1
fi
