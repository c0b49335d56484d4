//! The gRPC boundary: each handler validates and converts its request, makes one ledger call,
//! and converts the answer back. Errors become statuses in one place ([`status`]).

mod access;
mod admin;
pub mod codec;
mod convert;
mod credit;
mod status;

pub use admin::AdminApi;
pub use credit::CreditApi;
pub(crate) use status::error_status;
