//! The Linli server: hosts `sync-core` over SQL storage. See the crate README.

pub mod store;
