# liteobs-agent on Debian 12 with the libpcap runtime. It runs as root inside the container but
# only with the capabilities the DaemonSet grants (deploy/base/agent.yaml says which and why), in
# the host's network and PID namespaces. Two ways to build it, with BuildKit or the legacy builder:
#
#   From source, for anyone who can pull the rust and debian images (context: the repository root):
#     docker build -f deploy/docker/agent.Dockerfile -t liteobs-agent:0.1.0 .
#
#   From a binary built on a Debian 12 host (context: a directory holding liteobs-agent, stripped;
#   no rust image, no registry; what scripts/images.sh does):
#     docker build -f deploy/docker/agent.Dockerfile --build-arg PREBUILT=1 \
#         --build-arg RUST_IMAGE=debian:bookworm-slim -t liteobs-agent:0.1.0 DIR
#
# One linear file rather than a `--target` per way: the legacy builder runs every stage before
# the one it builds, so a stage for the other way would always run too.

ARG DEBIAN_IMAGE=debian:bookworm-slim
# Where the binary comes from. With PREBUILT set nothing is compiled and any image with a shell
# will do.
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS builder
# Labelled so that scripts/images.sh can prune the untagged images this stage leaves behind.
LABEL org.opencontainers.image.vendor="LiteObs"
ARG PREBUILT=
WORKDIR /src
COPY . .
RUN if [ -n "$PREBUILT" ]; then \
        mkdir /out && cp liteobs-agent /out/; \
    else \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpcap-dev pkg-config \
        && cargo build --release --locked -p liteobs-agent \
        && mkdir /out && strip --strip-debug -o /out/liteobs-agent target/release/liteobs-agent; \
    fi

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.title="liteobs-agent" org.opencontainers.image.vendor="LiteObs" \
      org.opencontainers.image.licenses="Apache-2.0"
# libpcap0.8 is the runtime library the agent links to. A base that already has it (the image
# scripts/images.sh makes with debootstrap) needs no network here.
RUN if ! dpkg-query -W -f='${Status}' libpcap0.8 2>/dev/null | grep -q 'install ok installed'; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpcap0.8 \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=builder /out/liteobs-agent /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/liteobs-agent"]
CMD ["-iface", "any"]
