//! End-to-end: the real server (in this process, on 127.0.0.1:0, over a SQLite file)
//! and phones running the phone library through its Rust API, as the apps do.

mod kill;
mod stories;
mod world;
