# The influxdb-router container image: a small Debian runtime with the
# release binary, running as the unprivileged user 10001, its write queues on
# the volume /var/lib/influxdb-router. Build from the repository root:
#
#   docker build -t influxdb-router:0.1.0 .
#
# Run it (the config below replaces the image's placeholder config):
#
#   docker run -d --name influxdb-router -p 5096:5096 \
#     -v influxdb-router-queue:/var/lib/influxdb-router \
#     -v "$PWD/router.toml:/etc/influxdb-router/config.toml:ro" \
#     influxdb-router:0.1.0
#
# deploy/sidecar/ runs it beside an application, deploy/kubernetes/ in front
# of an InfluxDB StatefulSet.

# The builder and the runtime are the same Debian release, so the binary
# finds the glibc it was linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Only what `cargo build` reads: the manifest names the benches, so they come too.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY src src
# The registry and target caches survive between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin influxdb-router \
    && install -D -m 0755 target/release/influxdb-router /out/influxdb-router

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the system roots that https:// nodes are verified against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 influxdb-router \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/influxdb-router --shell /usr/sbin/nologin influxdb-router \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/influxdb-router
COPY --from=build /out/influxdb-router /usr/local/bin/influxdb-router
COPY deploy/container/config.toml /etc/influxdb-router/config.toml
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /var/lib/influxdb-router
# The durable per-node queues ([buffer] dir): keep them on a volume, or a
# container replaced while a node is down loses that node's backlog.
VOLUME /var/lib/influxdb-router
# HTTP (InfluxDB 1.x API); line protocol over UDP when [server] udp_bind is set
EXPOSE 5096/tcp 8089/udp
# SIGTERM drains requests for up to [server] shutdown_timeout (30s by
# default): give the container longer than that to stop (docker stop -t 45,
# Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/influxdb-router"]
CMD ["serve", "--config", "/etc/influxdb-router/config.toml"]
