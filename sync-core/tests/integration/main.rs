//! sync-core's integration tests: one binary, one module per concern.

// In tests an unwrap is an assertion: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod support;

mod casefile;
mod closure;
mod convergence;
mod crafted;
mod envelope;
mod exchange;
mod forward;
mod protocol_doc;
mod refusals;
mod rules;
