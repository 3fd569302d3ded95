# syntax=docker/dockerfile:1
# sftp-operator: build on the project's toolchain, run on distroless as a non-root user.
# Not built here (no Docker engine on this project's machines); kept simple enough to check by
# reading. Cargo.toml lowers opt-level for the AWS SDK crates in release, so this builds in
# minutes rather than ~20 on two cores.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sftp-operator \
 && install -m 0755 target/release/sftp-operator /usr/local/bin/sftp-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/sftp-operator /usr/local/bin/sftp-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/sftp-operator"]
CMD ["run", "-f", "/etc/sftp-operator/manifests", "--metrics-addr", "0.0.0.0:9090"]
