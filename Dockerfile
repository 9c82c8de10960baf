# syntax=docker/dockerfile:1
#
# custody serve in a container: docs/DEPLOY.md.
#
#   docker build -t custody .
#   docker run --rm -p 8080:8080 custody
#   curl http://127.0.0.1:8080/hello
#
# Two stages: the workspace is built in release in the Rust image, and only
# the binary, the example plugins and their configuration go into a slim
# Debian image, run by a user without privileges.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# The registry and the target directory are cache mounts, so a rebuild after
# a source change recompiles custody's crates, not wasmtime; the binary is
# copied out of the cache mount, which does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p custody \
    && install -D -m 0755 target/release/custody /out/custody

FROM debian:bookworm-slim
# A fixed uid and gid, so the Kubernetes manifests (deploy/) can name them.
RUN groupadd --system --gid 10001 custody \
    && useradd --system --uid 10001 --gid custody --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin custody
COPY --from=build /out/custody /usr/local/bin/custody
# The bundled example plugins as files, and a configuration serving them on
# every interface of the container (without [admin]: the Kubernetes
# ConfigMap adds one, with its token).
COPY crates/custody-serve/plugins/hello.wat crates/custody-serve/plugins/echo.wat /usr/share/custody/plugins/
COPY deploy/custody.toml /etc/custody/custody.toml
USER 10001:10001
# 8080: the plugins and the health endpoints; 9090: the admin API and
# /metrics, when the configuration has an [admin] table.
EXPOSE 8080 9090
# The image has no HTTP client: bash's /dev/tcp sends the request, and the
# status line must be 200. `custody serve` answers health as soon as it
# listens, and until it exits.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /.well-known/custody/health HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
# SIGTERM (what `docker stop` and Kubernetes send) follows the termination
# contract: ready turns 503, shutdown_delay, drain, exit 0. Give `docker
# stop` a timeout above shutdown_delay + drain_timeout (`-t 60`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/custody"]
CMD ["serve", "--config", "/etc/custody/custody.toml"]
