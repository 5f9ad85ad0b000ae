//! Writes the version-1 wire fixtures and the schema-1 case-file fixture into
//! `sync-core/tests/fixtures/v1/`. Run only when the wire format or schema changes on
//! purpose: `cargo run -p sync-core --example write_fixtures`.

use std::path::Path;
use sync_core::protocol::fixtures::{request_v1, response_v1};

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("request.bin"), request_v1().encode())?;
    std::fs::write(dir.join("response.bin"), response_v1().encode())?;
    std::fs::write(
        dir.join("resident-schema1.automerge"),
        sync_core::doc::migrate::schema1_example(),
    )?;
    println!("wrote fixtures to {}", dir.display());
    Ok(())
}
