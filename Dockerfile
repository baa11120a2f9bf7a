# Two stages: build the release binary, then run it on a slim image. The binary
# is self-contained (migrations, templates and static files are embedded in it);
# the embedded default's data/ directory is created in its working directory.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY templates templates
COPY static static
RUN cargo build --release --bin flashguard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/flashguard /usr/local/bin/flashguard
ENV BIND_ADDR=0.0.0.0:8080 RUST_LOG=info
EXPOSE 8080
CMD ["flashguard"]
