//! creditpool: the credit balances behind paid AI generation, served over gRPC.

/// Code generated from `proto/creditpool/v1` by `build.rs`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("creditpool.v1");

    /// The encoded descriptor set of the contract, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("creditpool_descriptor");
}

pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod framing;
pub mod grpc;
pub mod jobs;
pub mod layer;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;

/// An error and its causes on one line, for the log.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
