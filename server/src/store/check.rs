//! `server check`: every stored document loads, its heads and place match what the
//! tables say, the feed covers every document, and the projections match the documents.

use super::{Result, SqlStore, heads_bytes, id_of, with_pool};
use std::fmt;
use sync_core::protocol::server::place_of;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Documents examined.
    pub documents: usize,
    /// Feed entries.
    pub feed_entries: i64,
    /// Batches in quarantine.
    pub quarantined: i64,
    /// Each problem, in words.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} documents, {} feed entries, {} quarantined batches",
            self.documents, self.feed_entries, self.quarantined
        )?;
        if self.ok() {
            return write!(f, "no problems found");
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        write!(f, "{} problems", self.problems.len())
    }
}

/// id, district, station, heads.
type DocRow = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, Vec<u8>);

impl SqlStore {
    /// Checks every document. Problems are reported, not fixed; the check only reads.
    pub async fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let rows: Vec<DocRow> = with_pool!(self, p =>
            sqlx::query_as("SELECT id, district, station, heads FROM documents ORDER BY id")
                .fetch_all(p).await?);
        let (feed_entries, quarantined): (i64, i64) = with_pool!(self, p => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM feed), (SELECT COUNT(*) FROM quarantine)")
            .fetch_one(p).await?);
        report.feed_entries = feed_entries;
        report.quarantined = quarantined;
        for (id, district, station, heads) in rows {
            report.documents += 1;
            let doc = match id_of(&id) {
                Ok(doc) => doc,
                Err(e) => {
                    report.problems.push(format!("a document id: {e}"));
                    continue;
                }
            };
            let loaded = match self.load_from_db(doc).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    report
                        .problems
                        .push(format!("document {doc} does not load: {e}"));
                    continue;
                }
            };
            if heads_bytes(&loaded.get_heads()) != heads {
                report.problems.push(format!(
                    "document {doc}: stored heads differ from its changes"
                ));
            }
            match place_of(&loaded) {
                Some(place)
                    if place.district.0.as_bytes().as_slice() == district.as_slice()
                        && place.station.map(|s| s.0.as_bytes().to_vec()) == station => {}
                _ => report.problems.push(format!(
                    "document {doc}: its district or station differs from the table's"
                )),
            }
            let in_feed: i64 = with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM feed WHERE doc = $1")
                .bind(id.clone()).fetch_one(p).await?);
            if in_feed == 0 {
                report.problems.push(format!(
                    "document {doc} has no feed entry: phones never receive it"
                ));
            }
        }
        let projections = self.check_projections().await?;
        report.problems.extend(
            projections
                .mismatches
                .into_iter()
                .map(|m| format!("projection of {}: {}", m.doc, m.problem)),
        );
        Ok(report)
    }
}
