//! Turning stored values into what a page shows: times in Shanghai's zone, dates read
//! from filters, and the names the district's catalog gives ids.

use crate::error::{Error, Result};
use crate::store::SqlStore;
use std::collections::HashMap;
use sync_core::doc::catalog::CatalogDoc;
use sync_core::ids::{DistrictId, DocId, Timestamp};
use sync_core::model::{Catalog, CatalogEntry};
use sync_core::protocol::store::ServerStore;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time, UtcOffset};
use uuid::Uuid;

use super::i18n::Lang;

/// China Standard Time (no daylight saving): the zone of every date on the pages.
pub(crate) const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// `2026-03-05 14:30` in Shanghai time.
pub(crate) fn date_time(ms: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(SHANGHAI))
        .ok()
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
                .ok()
        })
        .unwrap_or_else(|| "?".into())
}

/// `2026-03-05` in Shanghai time.
pub(crate) fn date(ms: Timestamp) -> String {
    date_time(ms).chars().take(10).collect()
}

/// The first millisecond of a `YYYY-MM-DD` day in Shanghai.
pub(crate) fn day_start(text: &str) -> Result<Timestamp> {
    let day =
        Date::parse(text.trim(), format_description!("[year]-[month]-[day]")).map_err(|_| {
            Error::bad_request("bad_date", format!("{text:?} is not a date (YYYY-MM-DD)"))
        })?;
    let t = day.with_time(Time::MIDNIGHT).assume_offset(SHANGHAI);
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// The first eight hex digits of an id, for ids the catalog does not name.
pub(crate) fn short(id: &Uuid) -> String {
    id.simple().to_string().chars().take(8).collect()
}

/// The names a district's catalog gives its ids.
#[derive(Debug, Default)]
pub(crate) struct Names {
    names: HashMap<Uuid, (String, String)>,
    pub catalog: Catalog,
}

impl Names {
    /// The catalog of `district`; empty if the district has none yet, or it does not
    /// load (the pages then show short ids rather than fail).
    pub async fn of(store: &SqlStore, district: Option<DistrictId>) -> Result<Names> {
        let Some(district) = district else {
            return Ok(Names::default());
        };
        let Some(doc) = store.load(DocId::from(district)).await? else {
            return Ok(Names::default());
        };
        let catalog = match CatalogDoc::from_doc(doc).and_then(|c| c.hydrate()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%district, error = %e, "the catalog does not load");
                return Ok(Names::default());
            }
        };
        let mut names = Names::default();
        fn add<I>(n: &mut Names, list: &[CatalogEntry<I>], uuid: impl Fn(&I) -> Uuid) {
            for e in list {
                let id = uuid(&e.id);
                n.names.insert(id, (e.name.clone(), e.name_en.clone()));
            }
        }
        add(&mut names, &catalog.stations, |i| i.0);
        add(&mut names, &catalog.alliances, |i| i.0);
        add(&mut names, &catalog.units, |i| i.0);
        add(&mut names, &catalog.projects, |i| i.0);
        add(&mut names, &catalog.service_types, |i| i.0);
        add(&mut names, &catalog.hazard_types, |i| i.0);
        names.catalog = catalog;
        Ok(names)
    }

    /// The name of `id` in `lang` (the other language's when one is empty), or a short
    /// id.
    pub fn name(&self, id: &Uuid, lang: Lang) -> String {
        match self.names.get(id) {
            Some((zh, en)) => {
                let (first, second) = match lang {
                    Lang::Zh => (zh, en),
                    Lang::En => (en, zh),
                };
                if first.is_empty() {
                    second.clone()
                } else {
                    first.clone()
                }
            }
            None => short(id),
        }
    }

    /// (id, name) of live entries of a catalog list, for a filter's options.
    pub fn options<I>(
        &self,
        list: &[CatalogEntry<I>],
        uuid: impl Fn(&I) -> Uuid,
        lang: Lang,
    ) -> Vec<(String, String)> {
        list.iter()
            .filter(|e| !e.archived)
            .map(|e| {
                let id = uuid(&e.id);
                (id.to_string(), self.name(&id, lang))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_shanghai_days() {
        let start = day_start("2026-03-05").unwrap();
        // 2026-03-05 00:00 +08:00 is 2026-03-04 16:00 UTC.
        assert_eq!(start, 1_772_640_000_000);
        assert_eq!(date_time(start), "2026-03-05 00:00");
        assert_eq!(date(start - 1), "2026-03-04");
        assert!(day_start("2026-13-01").is_err());
        assert!(day_start("yesterday").is_err());
    }
}
