//! sync-core's integration tests: one binary, one module per concern.

mod support;

mod casefile;
mod convergence;
mod envelope;
mod exchange;
mod rules;
