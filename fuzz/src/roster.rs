//! The roster import from an uploaded file: the first byte picks the file's name
//! (`.csv`, `.xlsx`, another extension, none), the rest is the file. Reading and
//! checking must answer; every row the preview accepts, the core must accept when the
//! import is confirmed.

const NAMES: [&str; 5] = [
    "roster.csv",
    "roster.xlsx",
    "ROSTER.CSV",
    "roster.txt",
    "roster",
];

pub fn run(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    if let Err(e) = server::web::roster_check_offline(name, file) {
        panic!("the preview accepts a row the core refuses: {e}");
    }
}
