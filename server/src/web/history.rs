//! The edit history of a resident's page: every change of the case file, newest first,
//! with its author, the device (or the web, or the server) that wrote it, and what it
//! touched.

use super::conflicts::field_label;
use super::i18n::Msgs;
use super::scope::{Bind, Sql, fetch};
use super::templates::HistoryLine;
use super::text::{date_time, short};
use crate::error::Result;
use crate::http::AppState;
use std::collections::{BTreeSet, HashMap};
use sync_core::doc::casefile::ProfileField;
use sync_core::doc::history::{HistoryEntry, Touched};
use sync_core::ids::{FollowUpId, UserId, VisitId};

/// Changes shown; older ones are left out (and the page says so).
pub(crate) const SHOWN: usize = 100;

/// Who writes as each actor (hex): a device's name, "web" for a user's edits on these
/// pages; actors not found (the server's own, such as migrations) are left out.
pub(crate) async fn actor_names(
    state: &AppState,
    t: &Msgs,
    actors: &BTreeSet<String>,
) -> Result<HashMap<String, String>> {
    let bytes: Vec<Bind> = actors
        .iter()
        .filter_map(|a| hex::decode(a).ok())
        .map(Bind::Bytes)
        .collect();
    if bytes.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = Sql::new(
        "SELECT da.actor, d.name FROM device_actors da JOIN devices d ON d.id = da.device \
         WHERE da.actor IN ",
    );
    q.bind_list(bytes.clone());
    let devices: Vec<(Vec<u8>, String)> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?;
    let mut q = Sql::new("SELECT actor FROM web_actors WHERE actor IN ");
    q.bind_list(bytes);
    let web: Vec<(Vec<u8>,)> = fetch!(&state.store, q, (Vec<u8>,), fetch_all)?;
    let mut names: HashMap<String, String> = devices
        .into_iter()
        .map(|(a, name)| (hex::encode(a), name))
        .collect();
    for (a,) in web {
        names.insert(hex::encode(a), t.web_device.to_owned());
    }
    Ok(names)
}

/// The page's lines, newest first, at most [`SHOWN`].
pub(crate) fn lines(
    t: &Msgs,
    entries: &[HistoryEntry],
    person: impl Fn(&UserId) -> String,
    devices: &HashMap<String, String>,
    visit_day: impl Fn(&VisitId) -> Option<String>,
    follow_up_title: impl Fn(&FollowUpId) -> Option<String>,
) -> Vec<HistoryLine> {
    entries
        .iter()
        .rev()
        .take(SHOWN)
        .map(|e| {
            let what: Vec<String> = e
                .touched
                .iter()
                .map(|touched| match touched {
                    Touched::Root(key) if key == "station" => t.station.to_owned(),
                    Touched::Root(_) => t.case_file.to_owned(),
                    Touched::Profile(key) => ProfileField::from_key(key)
                        .map_or_else(|| key.clone(), |f| field_label(t, f).to_owned()),
                    Touched::Visit(v) => format!(
                        "{} {}",
                        t.visit_word,
                        visit_day(v).unwrap_or_else(|| short(&v.0))
                    ),
                    Touched::FollowUp(f) => format!(
                        "{} {}",
                        t.follow_up_word,
                        follow_up_title(f).unwrap_or_else(|| short(&f.0))
                    ),
                    Touched::Catalog(_, id) => short(id),
                    Touched::Other(path) => path.clone(),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            HistoryLine {
                when: date_time(e.at),
                who: e.user.as_ref().map(&person).unwrap_or_default(),
                device: devices
                    .get(&e.actor)
                    .cloned()
                    .unwrap_or_else(|| match e.user {
                        None => t.server_device.to_owned(),
                        Some(_) => e.actor.chars().take(8).collect(),
                    }),
                what: what.join(if t.lang == super::i18n::Lang::Zh {
                    "、"
                } else {
                    ", "
                }),
            }
        })
        .collect()
}
