# Sourced by hack/test.sh and hack/tools.sh: `step NAME CMD...` runs CMD, prints its wall time and
# appends "NAME<TAB>SECONDS<TAB>STATUS" to $STEPS_FILE (hack/fresh-machine.sh reads it for its
# table). `step_table` prints the steps recorded so far.
: "${STEPS_FILE:=target/test-steps.tsv}"

step() {
  local name=$1; shift
  local start=$SECONDS status=0
  echo "==> $name"
  "$@" || status=$?
  local took=$((SECONDS - start))
  printf '%s\t%s\t%s\n' "$name" "$took" "$status" >> "$STEPS_FILE"
  echo "<== $name: ${took}s$([ "$status" = 0 ] || echo " (exit $status)")"
  return "$status"
}

step_table() {
  awk -F'\t' '{ printf "  %-58s %5ds  %s\n", $1, $2, ($3 == 0 ? "ok" : "FAILED (" $3 ")") }' "$STEPS_FILE"
}
