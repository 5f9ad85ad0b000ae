//! The Linli phone library. A skeleton until its issue lands: it re-exports the core it
//! will wrap so the workspace builds with its final shape.

pub use sync_core;
