# syntax=docker/dockerfile:1
# The `sfu` binary in a small non-root image (k8s/ runs it):
#   docker build -t registry.example.com/sfu:0.1.0 .
# Build stage: the toolchain the code is tested with; only the binary leaves it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sfu \
    && install -D -m 0755 target/release/sfu /out/sfu \
    && strip /out/sfu

# Runtime: glibc and CA certificates, no shell, no package manager; uid 65532 as k8s/ runs it.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sfu /usr/local/bin/sfu
USER 65532:65532
# HTTP + WebSocket (signaling, REST API, metrics), and the media port
EXPOSE 7880/tcp 7882/udp 7882/tcp
ENTRYPOINT ["/usr/local/bin/sfu"]
