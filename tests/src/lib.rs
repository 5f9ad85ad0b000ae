//! End-to-end tests for Linli: the real server and phones running the phone library.
//! The tests are in `tests/e2e/`; this crate's one binary, `phone-child`, is a phone the
//! kill tests run as a separate process and SIGKILL.
