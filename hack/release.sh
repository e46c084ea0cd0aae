#!/usr/bin/env bash
# The release step: moves every version that must move together to VERSION, in one go.
#   Cargo.toml (the version the operator and the emulator share) and Cargo.lock, the chart's
#   version and appVersion, the Artifact Hub image annotation, and the CHANGELOG (its
#   [Unreleased] section becomes [VERSION] - today, and a new empty [Unreleased] opens).
# tests/packaging/artifacthub.rs checks that the chart's version, its appVersion and the crate's
# version agree, so a release that skipped this script fails the suite.
#
# Usage: hack/release.sh VERSION [ROOT]   (ROOT defaults to the repository; the test uses a copy)
set -euo pipefail
version=${1:?usage: hack/release.sh VERSION [ROOT]}
root=${2:-$(cd "$(dirname "$0")/.." && pwd)}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "not a semantic version: $version" >&2; exit 1; }

cd "$root"
old=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
# The workspace's version only (the first `version =` line of Cargo.toml is
# [workspace.package]'s), which the operator and the emulator inherit.
sed -i "0,/^version = \".*\"$/s//version = \"$version\"/" Cargo.toml
# Cargo.lock: the entries of the two packages that inherit it.
if [ -f Cargo.lock ]; then
  awk -v v="$version" '
    /^name = "(pipecat-operator|pipecat-cloud-emulator)"$/ { print; getline; sub(/version = ".*"/, "version = \"" v "\""); print; next }
    { print }' Cargo.lock > Cargo.lock.new && mv Cargo.lock.new Cargo.lock
fi
chart=charts/pipecat-operator/Chart.yaml
sed -i -e "s/^version: .*/version: $version/" -e "s/^appVersion: .*/appVersion: \"$version\"/" \
  -e "s/^\(      image: pipecat-operator:\).*/\1$version/" "$chart"
today=$(date -u +%Y-%m-%d)
if grep -q '^## \[Unreleased\]' CHANGELOG.md; then
  sed -i "s/^## \[Unreleased\]$/## [Unreleased]\n\n## [$version] - $today/" CHANGELOG.md
fi
echo "released $old -> $version: Cargo.toml, Cargo.lock, $chart (version, appVersion, image), CHANGELOG.md"
