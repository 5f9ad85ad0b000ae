//! The Linli server binary. The sync service is not built yet: this skeleton keeps the
//! workspace's shape and says plainly that it does nothing.

fn main() -> std::process::ExitCode {
    eprintln!(
        "linli server: not yet implemented — the sync service arrives with its own issue.\n\
         The shared core (sync-core {}) is ready: model, rules and sync protocol.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
