//! The bindings generator, run by `scripts/bindings`: Kotlin, Swift and Python from the
//! built library (`generate --library`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
