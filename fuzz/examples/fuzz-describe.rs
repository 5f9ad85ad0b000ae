//! Prints a rules-target input as the target reads it: `cargo run -p linli-fuzz
//! --example fuzz-describe -- fuzz/artifacts/rules/crash-…`.

fn main() -> std::io::Result<()> {
    for path in std::env::args_os().skip(1) {
        println!("{}", linli_fuzz::rules::describe(&std::fs::read(path)?));
    }
    Ok(())
}
