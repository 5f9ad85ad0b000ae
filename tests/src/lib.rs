//! End-to-end tests for Linli. Empty until the server and the phone library land.
