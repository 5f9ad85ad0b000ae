//! End-to-end: the real server (in this process, on 127.0.0.1:0, over a SQLite file)
//! and phones running the phone library through its Rust API, as the apps do.

// In tests an unwrap is an assertion: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod hostile;
mod hub; // A station hub with the phone library (issue 15).
mod kill;
mod stories;
mod world;
