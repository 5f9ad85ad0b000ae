//! The sync protocol: a versioned binary envelope, the phone's replica state machine
//! and the server's step, over storage traits with in-memory implementations.
//! `sync-core/PROTOCOL.md` describes the exchange and the byte layout.

pub mod channel;
pub mod envelope;
pub mod export;
pub mod fixtures;
pub mod forward;
pub mod replica;
pub mod seal;
pub mod server;
pub mod store;

pub use envelope::{DecodeError, SyncRequest, SyncResponse};
