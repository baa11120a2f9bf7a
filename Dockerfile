# Two stages: build the release binary, then run it on a slim image.
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
COPY static static
ENV BIND_ADDR=0.0.0.0:8080 RUST_LOG=info
EXPOSE 8080
CMD ["flashguard"]
