# syntax=docker/dockerfile:1.7
# One image recipe for every service of the workspace:
#   docker build --build-arg SERVICE=task-api --build-arg APP_PORT=8080 -t todo/task-api:dev .
# SERVICE is the crate (and binary) name; APP_PORT only documents the port (EXPOSE): the
# service reads its port from the APP_PORT environment variable at run time.
#
# Dependencies are cached by BuildKit cache mounts (cargo registry, git checkouts and the
# target directory), so a rebuild after a source change recompiles only the workspace crates.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || (echo "build with --build-arg SERVICE=<crate name>" >&2; exit 1)
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The target directory is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p "${SERVICE}" --bin "${SERVICE}" \
 && install -D -m 0755 "target/release/${SERVICE}" /out/service

FROM ${RUNTIME_IMAGE}
ARG SERVICE
ARG APP_PORT=8080
LABEL org.opencontainers.image.title="todo-${SERVICE}" \
      org.opencontainers.image.description="todo system service ${SERVICE} (Dapr sidecar required)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/service /usr/local/bin/service
# distroless "nonroot": uid/gid 65532, no shell, no package manager. Probes are plain HTTP
# (GET /healthz, GET /readyz on the app port), so the image needs no curl.
USER 65532:65532
ENV LOG_FORMAT=json
EXPOSE ${APP_PORT}
ENTRYPOINT ["/usr/local/bin/service"]
