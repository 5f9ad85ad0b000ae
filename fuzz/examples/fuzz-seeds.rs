//! Writes the seed inputs into a corpus folder, as `scripts/fuzz` does before a run:
//! `cargo run -p linli-fuzz --example fuzz-seeds -- fuzz/corpus`. Existing files are
//! kept; seeds are named by their content, so writing them twice adds nothing.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);
    for (target, seeds) in [
        ("envelope", linli_fuzz::seeds::envelope()),
        ("roster", linli_fuzz::seeds::roster()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for seed in seeds {
            std::fs::write(
                dir.join(format!("seed-{}", linli_fuzz::name_of(&seed))),
                seed,
            )?;
        }
    }
    std::fs::create_dir_all(root.join("rules"))?;
    Ok(())
}
