//! Generates the tonic/prost code and the reflection descriptor set from `proto/` with protox,
//! a pure-Rust protobuf compiler, so no system `protoc` is needed.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "proto/creditpool/v1/types.proto",
    "proto/creditpool/v1/credit_service.proto",
    "proto/creditpool/v1/admin_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    fs::write(out_dir.join("creditpool_descriptor.bin"), descriptors.encode_to_vec())?;
    // A request that does not decode is the caller's error: see src/grpc/codec.rs.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
