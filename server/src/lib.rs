//! The Linli server: hosts `sync-core` over SQL storage, behind HTTP. See the crate
//! README.

pub mod auth;
pub mod config;
pub mod demo;
pub mod enrolment;
pub mod error;
pub mod http;
pub mod hub;
pub mod hubs;
pub mod identity;
pub mod store;
pub mod web;

pub use error::{Error, Result};

/// Milliseconds since the Unix epoch, the clock documents and tables use.
pub fn now_ms() -> sync_core::ids::Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
