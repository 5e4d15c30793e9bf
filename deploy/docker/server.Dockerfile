# liteobs-server (and liteobs-client, for `kubectl exec ... liteobs-client`) on Debian 12, as a
# non-root user. Two ways to build it, with BuildKit or the legacy builder:
#
#   From source, for anyone who can pull the rust and debian images (context: the repository root;
#   the first build compiles DuckDB's C++, ~20 minutes on 2 cores):
#     docker build -f deploy/docker/server.Dockerfile -t liteobs-server:0.1.0 .
#
#   From binaries built on a Debian 12 host (context: a directory holding liteobs-server and
#   liteobs-client, stripped; no rust image, no registry; what scripts/images.sh does):
#     docker build -f deploy/docker/server.Dockerfile --build-arg PREBUILT=1 \
#         --build-arg RUST_IMAGE=debian:bookworm-slim -t liteobs-server:0.1.0 DIR
#
# One linear file rather than a `--target` per way: the legacy builder runs every stage before
# the one it builds, so a stage for the other way would always run too.
#
# The data directory /var/lib/liteobs belongs to UID 10001 and is a volume; the default command
# serves DuckDB there on 0.0.0.0:8080. Arguments replace the command, e.g.
#   docker run IMAGE -db-type sqlite -db-path /var/lib/liteobs/liteobs.sqlite -listen 0.0.0.0:8080

ARG DEBIAN_IMAGE=debian:bookworm-slim
# Where the binaries come from. With PREBUILT set nothing is compiled and any image with a shell
# will do.
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS builder
# Labelled so that scripts/images.sh can prune the untagged images this stage leaves behind.
LABEL org.opencontainers.image.vendor="LiteObs"
ARG PREBUILT=
WORKDIR /src
COPY . .
# One profile (release), as everywhere in LiteObs; the debug info of DuckDB's C++ is stripped.
RUN mkdir /out \
    && if [ -n "$PREBUILT" ]; then \
        cp liteobs-server liteobs-client /out/; \
    else \
        cargo build --release --locked -p liteobs-server -p liteobs-client \
        && for b in liteobs-server liteobs-client; do strip --strip-debug -o /out/$b target/release/$b; done; \
    fi

FROM ${DEBIAN_IMAGE} AS runtime
LABEL org.opencontainers.image.title="liteobs-server" org.opencontainers.image.vendor="LiteObs" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric IDs, so Kubernetes' runAsNonRoot can check them without a passwd entry.
RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/liteobs
COPY --from=builder /out/liteobs-server /out/liteobs-client /usr/local/bin/
WORKDIR /var/lib/liteobs
VOLUME ["/var/lib/liteobs"]
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/liteobs-server"]
CMD ["-listen", "0.0.0.0:8080", "-db-type", "duckdb", "-db-path", "/var/lib/liteobs/liteobs.duckdb"]
