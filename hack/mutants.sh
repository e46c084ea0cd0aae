#!/usr/bin/env bash
# Test strength of the controller's pure core, measured with cargo-mutants (crates.io): every
# mutant of the planning, comparison, readiness and status logic must make a unit test fail.
# Only the library's unit tests run (no control plane), so a surviving mutant is a gap in the
# fast tests. Not part of hack/test.sh: it rebuilds the library once per mutant (about 25 to 40
# minutes on 2 cores).
#
# Usage: hack/mutants.sh [extra cargo-mutants arguments]
# Prints the caught/missed/unviable counts and the caught share of viable mutants; the
# detailed results are under target/mutants.out/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
  echo "==> installing cargo-mutants (first run only)"
  cargo install --locked cargo-mutants
fi

files=(
  src/controller/plan.rs
  src/controller/desired.rs
  src/controller/compare.rs
  src/controller/readiness.rs
  src/controller/status.rs
)
args=()
for f in "${files[@]}"; do args+=(--file "$f"); done

mkdir -p target
cargo mutants "${args[@]}" --output target --no-shuffle "$@" -- --lib || true

out=target/mutants.out
caught=$(wc -l < "$out/caught.txt")
missed=$(wc -l < "$out/missed.txt")
timeout=$(wc -l < "$out/timeout.txt")
unviable=$(wc -l < "$out/unviable.txt")
viable=$((caught + missed + timeout))
echo
echo "mutants: $caught caught, $missed missed, $timeout timed out, $unviable unviable"
if [ "$viable" -gt 0 ]; then
  awk -v c="$caught" -v v="$viable" 'BEGIN { printf "caught %.1f%% of %d viable mutants\n", 100 * c / v, v }'
fi
if [ "$missed" -gt 0 ]; then
  echo "missed:"
  cat "$out/missed.txt"
fi
