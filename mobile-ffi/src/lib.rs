#![doc = include_str!("../README.md")]

uniffi::setup_scaffolding!();

mod client;
mod crypto;
mod error;
mod net;
pub mod store;
mod types;

pub use client::{CancelToken, LinliClient};
pub use error::{LinliError, Result};
pub use sync_core;
pub use types::*;
