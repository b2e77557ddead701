//! dynamo's HTTP/JSON front door (SPEC §3–4) and the `dynamo` binary's
//! building blocks.
//!
//! Thin by design: [`api::configure`] registers every route, handlers only
//! translate between HTTP and the coordinator's messages, and
//! [`error::ApiError`] is the one place statuses are chosen. The server
//! takes an already-bound listener, so tests bind port 0.

#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod metrics;
pub mod ops;
pub mod parse;
pub mod server;
