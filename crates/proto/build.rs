//! Compiles `proto/raven/v1/raven.proto` with protox (a pure-Rust protobuf compiler, so
//! building Raven needs no `protoc` on the machine) and generates two views of it:
//!
//! * `raven.v1.rs`: every message, plus the client — what clients and tests use;
//! * `server/raven.v1.rs`: only the server trait, whose `Subscribe` stream yields
//!   [`OutboundMessage`](crate::OutboundMessage) instead of `ServerMessage`, so that a
//!   message encoded once in the hub is written to every subscriber without re-encoding.
//!
//! It also writes the encoded descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = proto_root.join("raven/v1/raven.proto");
    println!("cargo:rerun-if-changed={}", file.display());

    let fds = protox::compile([&file], [&proto_root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("raven_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds.clone())?;

    let server_out = out.join("server");
    std::fs::create_dir_all(&server_out)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&server_out)
        .extern_path(".raven.v1", "crate::pb")
        .extern_path(".raven.v1.ServerMessage", "crate::OutboundMessage")
        .compile_fds(fds)?;
    Ok(())
}
