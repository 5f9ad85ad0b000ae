#![doc = include_str!("../README.md")]

pub mod doc;
pub mod error;
pub mod ids;
pub mod model;
pub mod protocol;
pub mod rules;

pub use automerge;
pub use error::{Error, Result};
