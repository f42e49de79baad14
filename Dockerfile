# syntax=docker/dockerfile:1
# multus-rs image: multus-daemon, multus-shim, passthru and install_multus at upstream's paths
# (/usr/src/multus-cni/bin/), so upstream's DaemonSet commands and the chart both work.
#
#   docker build -t ghcr.io/multus-rs/multus-rs:0.1.0 .
#
# Without docker (CI; no registry needed): build the binaries as the build stage does, then
#   cargo run -p multus-e2e --bin build-image -- --bins <dir with the four binaries> --out <oci dir>
# writes the same final stage as an OCI image layout; it reads this file's final stage (COPY,
# ENV, USER, LABEL, ENTRYPOINT, CMD) and refuses any instruction there it cannot reproduce.
#
# The container runs as root, on purpose: the daemon enters pod network namespaces (setns needs
# CAP_SYS_ADMIN in the owning user namespace, the host's), execs delegate plugins that configure
# host links and write root-owned host state (/var/lib/cni, /run/netns), chroots into the host root,
# and owns the 0700 socket dir the shim (run by the root container runtime) connects to. A non-root
# user with those capabilities would be root in all but name; the chart instead narrows root down
# to a listed capability set, a read-only root filesystem and RuntimeDefault seccomp.

# The Rust release daemon/link-order.txt was made with (its first line): the daemon's symbol
# names depend on it, and with another release the build warns and links without the order
# (about 5 MiB more idle RSS). Change both together (`e2e/link-order` regenerates the list).
ARG RUST_VERSION=1.95.0
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The shim and passthru are static musl binaries (see e2e/build-release-bins, which adds the
# target itself when missing): added here, before the source, so the layer outlives code changes.
RUN rustup target add "$(uname -m)-unknown-linux-musl"
COPY . .
# `multus-daemon -version` prints these in upstream's shape (upstream sets them with -ldflags -X):
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg GIT_TREE_STATE="$(test -n "$(git status --porcelain --untracked-files=no)" && echo dirty || echo clean)" \
#     --build-arg BUILD_DATE="$(date -u --iso-8601=seconds)" .
ARG REVISION=
ARG GIT_TREE_STATE=
ARG BUILD_DATE=
ARG RELEASE_STATUS=
ENV MULTUS_GIT_COMMIT="${REVISION:-unknown commit}" \
    MULTUS_GIT_TREE_STATE=${GIT_TREE_STATE} \
    MULTUS_RELEASE_STATUS=${RELEASE_STATUS} \
    MULTUS_BUILD_DATE="${BUILD_DATE:-unknown date}"
# protobuf is compiled by build.rs with protox: no system protoc needed.
# e2e/build-release-bins is the recipe (the daemon dynamically linked against the image's
# glibc, the shim and passthru static musl for the host), shared with CI's docker-free image
# build so the two cannot differ.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    e2e/build-release-bins /out

# distroless/cc: glibc and libgcc only, no shell or package manager (the probes use
# install_multus, not a shell). The default (root) variant, see above.
FROM gcr.io/distroless/cc-debian12
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="multus-rs" \
      org.opencontainers.image.description="Multus CNI thick plugin in Rust: multus-daemon, multus-shim, passthru, install_multus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/multus-rs/multus-rs"
# Upstream's layout: install_multus -t thick copies multus-shim and passthru to the host.
COPY --from=build /out/multus-daemon /out/multus-shim /out/passthru /out/install_multus /usr/src/multus-cni/bin/
# sbin too: delegates run without chrootDir find iptables, nft and ip there (the daemon appends
# the same directories to a delegate's PATH when missing).
ENV PATH=/usr/src/multus-cni/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Root by number: resolving a name would need /etc/passwd, which the image does not need.
USER 0:0
ENTRYPOINT ["/usr/src/multus-cni/bin/multus-daemon"]
CMD ["--config", "/etc/cni/net.d/multus.d/daemon-config.json"]
