# syntax=docker/dockerfile:1
#
# The pipecat-operator image: a static-ish binary on distroless, running as 65532:65532 (the
# user the Helm chart's securityContext expects).
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     -t <registry>/pipecat-operator:0.1.0 --push .
#
# hack/image.sh builds the same image for the build machine's architecture with no engine and
# no base image (umoci); tests/packaging/container.rs checks that both declare the same user,
# entrypoint, ports and labels, and runs that image with runc.
#
# Runtime base: gcr.io/distroless/cc-debian12:nonroot with a glibc build, not static/musl.
# The TLS stack (rustls on ring) compiles C and assembly, so every target needs a C cross
# compiler: Debian ships gcc cross toolchains for glibc targets but none for musl, and the
# build image (bookworm) has the same glibc as distroless debian12, so the binary runs there
# as built. glibc's allocator also holds up better than musl's under a multi-threaded tokio
# runtime. The build runs natively on the build machine ($BUILDPLATFORM) and cross-compiles
# for $TARGETARCH: no QEMU emulation.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
ARG BUILDARCH
WORKDIR /src

# Rust target triple and C cross compiler of the target architecture.
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu;  gcc=gcc-x86-64-linux-gnu; libc=libc6-dev-amd64-cross ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gcc=gcc-aarch64-linux-gnu; libc=libc6-dev-arm64-cross ;; \
      *) echo "unsupported TARGETARCH: $TARGETARCH (amd64 or arm64)" >&2; exit 1 ;; \
    esac; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gcc" "$libc"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$triple"; \
    echo "$triple" > /rust-target

# The cross linkers and C compilers (native builds find the same names on PATH).
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TERM_COLOR=never

COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The other workspace members (the emulator, the test harness): cargo reads their manifests to
# resolve the workspace (they are not built).
COPY emulator ./emulator
COPY testkit ./testkit

# The registry and target directories are cache mounts (shared across builds, per
# target triple inside target/), so the binary is copied out of the cache before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    triple=$(cat /rust-target); \
    cargo build --release --locked --bin pipecat-operator --target "$triple"; \
    install -D -m 0755 "target/$triple/release/pipecat-operator" /out/pipecat-operator

FROM gcr.io/distroless/cc-debian12:nonroot

# The crate version and the source commit (see the build command above).
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="pipecat-operator" \
      org.opencontainers.image.description="Kubernetes operator for Pipecat Cloud voice agents" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /out/pipecat-operator /pipecat-operator

# nonroot in distroless; the chart's runAsUser/runAsGroup.
USER 65532:65532
# Metrics (GET /metrics) and health probes (GET /healthz, /readyz).
EXPOSE 8080 8081

ENTRYPOINT ["/pipecat-operator"]
CMD ["run"]
