//! Linli's fuzz targets. Each module's `run` takes arbitrary bytes and must never
//! panic; where a target can check more than "no panic" (a decoded envelope encodes
//! back to itself, an accepted change leaves a readable document) it asserts that too,
//! so a wrong answer is a crash the fuzzer keeps.
//!
//! `scripts/fuzz TARGET [SECONDS]` runs one under libFuzzer (cargo fuzz, stable Rust,
//! no sanitizer); `tests/corpus.rs` replays every kept input on every test run. See
//! this crate's README and RELIABILITY.md.

#![forbid(unsafe_code)]

pub mod envelope;
pub mod fixtures;
pub mod roster;
pub mod rules;
pub mod seeds;

/// The server step parses, applies and judges a device's bytes under a panic guard,
/// because Automerge panics on some malformed input; libFuzzer's panic hook would abort
/// on those caught panics too. Panics raised inside Automerge (and its column encoder)
/// stay quiet. Any other goes to the previous hook (libFuzzer's, which aborts) and is
/// written down, so that [`no_linli_panic`] fails the input after the fact when a guard
/// caught it (the corpus replay runs under the test harness's hook, which does not
/// abort). An Automerge panic nothing catches still unwinds out of the target.
pub(crate) fn quiet_automerge_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = info
                .location()
                .is_some_and(|l| l.file().contains("/automerge-") || l.file().contains("/hexane-"));
            if !inside {
                LINLI_PANIC.with(|p| p.replace(Some(info.to_string())));
                previous(info);
            }
        }));
    });
    LINLI_PANIC.with(|p| p.replace(None));
}

thread_local! {
    /// The last panic raised outside Automerge on this thread, since the input began.
    static LINLI_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Fails the input if Linli's own code panicked while it ran, even where a guard
/// caught the panic and answered.
pub(crate) fn no_linli_panic() {
    if let Some(panic) = LINLI_PANIC.with(|p| p.take()) {
        panic!("Linli's code panicked, and a guard caught it: {panic}");
    }
}

/// A content name for an input (hex of a 64-bit FNV-1a hash), so the same input
/// written twice is one file.
pub fn name_of(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
