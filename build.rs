//! Nothing to build: this script exists so that cargo resolves the
//! `[build-dependencies]` of Cargo.toml, which unify a host-side feature
//! between `cargo run` and `cargo test` (see the note there).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
