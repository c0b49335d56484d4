# The creditpool image: built with the Rust toolchain, run as a non-root user on a minimal base
# that holds only the binary (and the C runtime it links against).

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
# jemalloc, the binary's allocator, is built from C with make, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin creditpool \
    && mkdir -p /out/data \
    && cp target/release/creditpool /out/creditpool

FROM gcr.io/distroless/cc-debian12:nonroot
# The embedded SQLite default keeps its file here; mount a volume, or point
# CREDITPOOL_DATABASE_URL at Postgres (what the Helm chart does).
COPY --from=build --chown=65532:65532 /out/data /var/lib/creditpool
COPY --from=build /out/creditpool /usr/local/bin/creditpool
# Reachable from outside the container: the server then refuses to start without an auth
# file (CREDITPOOL_AUTH_FILE) unless told --insecure-no-auth.
ENV CREDITPOOL_SQLITE_PATH=/var/lib/creditpool/creditpool.db \
    CREDITPOOL_LISTEN_ADDR=0.0.0.0:50051
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["creditpool"]
CMD ["serve"]
