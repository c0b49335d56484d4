//! Integration tests: the real server over real gRPC on a real Postgres database per test.
//! Every scenario ends with `VerifyLedger` clean.

mod helpers;
mod postgres;
mod process;

mod accounts;
mod bad_input;
mod batches;
mod bench;
mod citus;
mod cli_clients;
mod clocks;
mod concurrency;
mod crash;
mod embedded;
mod faults;
mod harness;
mod health;
mod hostile;
mod hot_path;
mod idempotency;
mod ledger;
mod members;
mod model;
mod notifications;
mod operations;
mod overflow;
mod pki;
mod renewals;
mod reports;
mod security;
mod transport;
mod workspaces;
