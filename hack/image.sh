#!/usr/bin/env bash
# Builds the pipecat-operator container image without a Docker engine and without a base image:
# the binary, exactly the shared libraries it links (ldd), the CA bundle, a passwd/group entry
# for 65532 and the OCI config the Dockerfile declares (user, entrypoint, ports, labels), as an
# OCI archive under target/image/. Uses Debian's umoci (installed with apt-get when missing).
#
#   hack/image.sh                        # cargo build --release, then the image
#   hack/image.sh --profile dev          # the debug build (faster to build, larger)
#   hack/image.sh --binary PATH          # an already built binary, no cargo
#   hack/image.sh --out FILE             # the archive's path (default target/image/pipecat-operator-PROFILE.oci.tar)
#   hack/image.sh --docker-archive       # also NAME.docker.tar next to it, for `docker load` (skopeo)
#
# Reproducible: the same commit (and the same host libraries and CA bundle) gives the same
# image digest. File times are the commit time (SOURCE_DATE_EPOCH), owners are numeric and
# fixed, the config and its one history entry carry the commit time, and the archive's entries
# are sorted. An archive is rebuilt only
# when its inputs change (binary digest, this script, version, revision).
#
# The last lines on stdout are machine-readable: archive=, digest= (the manifest digest),
# config= (the config digest, what `docker images` shows as IMAGE ID), tag=.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
binary=
out=
docker_archive=
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --binary) binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --docker-archive) docker_archive=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release|dev) ;;
  *) echo "image.sh: --profile is release or dev, not $profile" >&2; exit 2 ;;
esac

log() { echo "image.sh: $*" >&2; }

# Debian's packages for the tools that are missing (root, or sudo without a password).
install_packages() {
  local missing=() cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" > /dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
      sudo=(sudo -n)
    else
      log "needs ${missing[*]} (Debian packages); run as root or install them: apt-get install -y ${missing[*]}"
      exit 1
    fi
  fi
  if ! command -v apt-get > /dev/null 2>&1; then
    log "needs ${missing[*]}; no apt-get here: install them with your package manager"
    exit 1
  fi
  log "installing ${missing[*]} (apt-get)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ca_bundle=/etc/ssl/certs/ca-certificates.crt
needs=(umoci:umoci tar:tar sha256sum:coreutils ldd:libc-bin strip:binutils)
[ -f "$ca_bundle" ] || needs+=(update-ca-certificates:ca-certificates)
[ -z "$docker_archive" ] || needs+=(skopeo:skopeo)
install_packages "${needs[@]}"
[ -f "$ca_bundle" ] || { log "no CA bundle at $ca_bundle (package ca-certificates)"; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
revision=${SOURCE_REVISION:-$(git rev-parse HEAD 2> /dev/null || echo unknown)}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2> /dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) log "unsupported architecture $(uname -m)"; exit 1 ;;
esac
target_dir=${CARGO_TARGET_DIR:-target}

built_from="binary $binary"
if [ -z "$binary" ]; then
  built_from="$profile profile"
  if [ "$profile" = release ]; then
    log "cargo build --release"
    cargo build --release --locked --bin pipecat-operator >&2
    binary=$target_dir/release/pipecat-operator
  else
    log "cargo build"
    cargo build --locked --bin pipecat-operator >&2
    binary=$target_dir/debug/pipecat-operator
  fi
fi
[ -x "$binary" ] || { log "no executable at $binary"; exit 1; }
[ -n "$out" ] || { [ "$built_from" = "$profile profile" ] && out=$target_dir/image/pipecat-operator-$profile.oci.tar || out=$target_dir/image/pipecat-operator-custom.oci.tar; }
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
tag=$version
docker_tar=${out%.oci.tar}.docker.tar

# The inputs; an archive built from the same ones is reused.
key=$( { sha256sum < "$binary"; sha256sum < "$0"; sha256sum < "$ca_bundle";
         echo "$version $revision $epoch $arch"; } | sha256sum | cut -c1-64)
summary() {
  local layout=$1 manifest config
  manifest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")
  config=$(sed -n 's/.*"config":{[^}]*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' \
    "$layout/blobs/sha256/${manifest#sha256:}")
  local size layer_bytes
  size=$(stat -c %s "$out")
  layer_bytes=$(sed -n 's/.*"layers":\[{[^}]*"size":\([0-9]*\).*/\1/p' \
    "$layout/blobs/sha256/${manifest#sha256:}")
  cat >&2 <<EOF

pipecat-operator:$tag ($arch, $built_from, revision $revision)
  archive  $out ($(numfmt --to=iec-i --suffix=B "$size"), compressed layer $(numfmt --to=iec-i --suffix=B "$layer_bytes"))
  digest   $manifest
  config   $config

Push it to a registry (no engine needed):
  skopeo copy oci-archive:$out:$tag docker://REGISTRY/pipecat-operator:$tag
Load it into Docker:
  skopeo copy oci-archive:$out:$tag docker-archive:$docker_tar:pipecat-operator:$tag
  docker load -i $docker_tar
Run it without an engine:
  umoci unpack --image DIR:$tag BUNDLE   (after: mkdir DIR && tar -xf $out -C DIR)
  runc run --bundle BUNDLE pipecat-operator
EOF
  if [ -n "$docker_archive" ]; then
    rm -f "$docker_tar"
    skopeo copy -q "oci-archive:$out:$tag" "docker-archive:$docker_tar:pipecat-operator:$tag" >&2
    log "docker-archive: $docker_tar (docker load -i $docker_tar gives pipecat-operator:$tag)"
  fi
  echo "archive=$out"
  echo "digest=$manifest"
  echo "config=$config"
  echo "tag=$tag"
}

work=$out.d
if [ -f "$out" ] && [ -f "$work/key" ] && [ "$(cat "$work/key")" = "$key" ]; then
  log "up to date (same binary, script, version and revision): $out"
  summary "$work/layout"
  exit 0
fi
rm -rf "$work" "$out"
mkdir -p "$work"
rootfs=$work/rootfs
layout=$work/layout

# --- The root filesystem -------------------------------------------------------------------
mkdir -p "$rootfs"/{etc/ssl/certs,tmp,home/nonroot}
install -m 0755 "$binary" "$rootfs/pipecat-operator"
strip --strip-unneeded "$rootfs/pipecat-operator"
# Exactly the shared libraries the binary links, at the paths the loader looks for them.
libs=$(ldd "$binary" 2> /dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }') || true
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  install -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
[ -n "$libs" ] || log "statically linked: no shared libraries"
# The system's CA roots (rustls' platform verifier reads this file when a kubeconfig has no CA).
install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$rootfs/etc/hosts"
chmod 0644 "$rootfs"/etc/{passwd,group,nsswitch.conf,hosts}
find "$rootfs" -type d -exec chmod 0755 {} +
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/home/nonroot"
chown -R 0:0 "$rootfs"
chown 65532:65532 "$rootfs/home/nonroot"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

# --- The image -----------------------------------------------------------------------------
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
# One layer, written by GNU tar so that its entries are sorted and carry only fixed times and
# numeric owners; umoci compresses it and records it.
(cd "$rootfs" && LC_ALL=C tar --sort=name --mtime="@$epoch" --numeric-owner --format=gnu \
  -cf "$work/layer.tar" $(LC_ALL=C ls -A))
umoci raw add-layer --image "$layout:$tag" \
  --history.created "$created" --history.created_by "hack/image.sh" \
  --history.comment "pipecat-operator $version ($revision)" "$work/layer.tar"
rm -f "$work/layer.tar"
umoci config --no-history --image "$layout:$tag" \
  --created "$created" --architecture "$arch" --os linux \
  --config.user 65532:65532 \
  --config.entrypoint /pipecat-operator --config.cmd run \
  --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=pipecat-operator \
  --config.label "org.opencontainers.image.description=Kubernetes operator for Pipecat Cloud voice agents" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision"
umoci gc --layout "$layout"
find "$layout" -exec touch -h -d "@$epoch" {} +
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$layout" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "$key" > "$work/key"
rm -rf "$rootfs"
summary "$layout"
