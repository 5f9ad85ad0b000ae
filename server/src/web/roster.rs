//! Importing a resident roster from the XLSX or CSV file a community already keeps
//! (issue 5): upload, a preview that lists every row and every problem, and a confirm
//! that creates all the residents, or none while any problem remains.
//!
//! - The header row is recognised in Chinese or English, columns in any order; unknown
//!   columns are named as warnings and ignored.
//! - Every cell is checked with the core's own field rules (`ProfileField::validate`),
//!   after parsing (numbers, living situation and risk codes, in either language or as
//!   codes); duplicates by name and address are refused within the file and against
//!   the station's existing residents.
//! - The confirm trusts nothing from the browser: the preview's form carries the file
//!   itself (base64), and the confirm checks the CSRF token, the station's scope and
//!   the whole file again, exactly as the upload did. Stateless, so it works behind
//!   several server instances and across restarts.
//! - Each resident is created through the core (`CaseFile::create`, whose rules check
//!   the scope again) under the server-held web actor of the user, and stored with the
//!   normal append, so the new case files reach the phones at their next sync. All
//!   rows are validated before the first is created, so creation fails only if the
//!   storage does; the page then lists what was created.
//! - A row's resident id is derived from the district, the station and the row's name
//!   and address ([`roster_id`]), so two confirms of one file (a double click, two
//!   tabs, two server instances) make the same case files: the store keeps the first
//!   of each, and the later confirm finds them and creates nothing.

use super::i18n::{Lang, RosterMsgs};
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::templates::Chrome;
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::{Announcing, AppState};
use crate::identity::User;
use crate::now_ms;
use askama::Template;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Form, Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use calamine::{Data, Reader, Xlsx};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use sync_core::automerge::{ActorId, Change};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::ids::{DistrictId, DocId, ResidentId, StationId, UserId};
use sync_core::model::{LivingSituation, Principal, Profile, RiskLevel, Role, Scope};
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// The largest file accepted.
pub(crate) const MAX_FILE: usize = 2 << 20;
/// The upload's whole body: the file and the form's few small fields.
pub(crate) const MAX_BODY: usize = MAX_FILE + (64 << 10);
/// The most residents one file may hold.
const MAX_ROWS: usize = 5000;

/// A station the user may import into.
#[derive(Debug, Clone)]
pub(crate) struct StationChoice {
    id: Uuid,
    district: Uuid,
    name: String,
}

#[derive(Debug, Template)]
#[template(path = "roster.html")]
pub(crate) struct RosterPage {
    pub c: Chrome,
    pub r: &'static RosterMsgs,
    pub stations: Vec<(String, String, bool)>,
    pub error: Option<String>,
}

/// A row as the preview shows it.
#[derive(Debug)]
pub(crate) struct PreviewRow {
    pub number: u64,
    pub cells: Vec<String>,
    pub bad: bool,
}

/// A problem, with where it is.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// The row number in the file (spreadsheet row or CSV line); `None`: the file.
    pub row: Option<u64>,
    /// The column's header as written in the file; empty for the whole file or row.
    pub column: String,
    pub message: String,
}

#[derive(Debug, Template)]
#[template(path = "roster_preview.html")]
pub(crate) struct PreviewPage {
    pub c: Chrome,
    pub r: &'static RosterMsgs,
    pub station: String,
    pub station_id: String,
    pub file_name: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<PreviewRow>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<String>,
    pub ready: String,
    /// The file, base64url, for the confirm form; empty when there are errors.
    pub data: String,
}

#[derive(Debug, Template)]
#[template(path = "roster_done.html")]
pub(crate) struct DonePage {
    pub c: Chrome,
    pub r: &'static RosterMsgs,
    pub summary: String,
    pub failed: bool,
    /// Links and names of the residents created.
    pub created: Vec<(String, String)>,
}

/// `GET /web/residents/import`.
pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
) -> Result<Response, WebError> {
    form_page(&state, lang, &user, StatusCode::OK, None, None)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn form_page(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    status: StatusCode,
    error: Option<String>,
    selected: Option<&str>,
) -> Result<Response> {
    let stations = stations(state, &user.user).await?;
    let page = RosterPage {
        c: user.chrome(lang, "/web/residents/import"),
        r: lang.roster(),
        error: error.or_else(|| {
            stations
                .is_empty()
                .then(|| lang.roster().no_station.to_owned())
        }),
        stations: stations
            .into_iter()
            .map(|s| {
                let id = s.id.to_string();
                let chosen = selected == Some(id.as_str());
                (id, s.name, chosen)
            })
            .collect(),
    };
    Ok((status, render(&page)?).into_response())
}

/// The stations `user` may import into: within their district and their scope.
async fn stations(state: &AppState, user: &User) -> Result<Vec<StationChoice>> {
    let Some(district) = user.district else {
        return Ok(Vec::new());
    };
    let mut q = Sql::new("SELECT s.id, s.district, s.name FROM stations s WHERE s.district = ");
    q.bind(Bind::id(&district.0)).push(" AND ");
    q.scope(user, "s.district", "s.id")?;
    q.push(" ORDER BY s.name");
    let rows: Vec<(Vec<u8>, Vec<u8>, String)> =
        fetch!(&state.store, q, (Vec<u8>, Vec<u8>, String), fetch_all)?;
    rows.into_iter()
        .map(|(id, district, name)| {
            let id = Uuid::from_slice(&id)
                .map_err(|_| Error::Internal("a stored station id is not 16 bytes".into()))?;
            let district = Uuid::from_slice(&district)
                .map_err(|_| Error::Internal("a stored district id is not 16 bytes".into()))?;
            Ok(StationChoice { id, district, name })
        })
        .collect()
}

/// The station `text` names, if the user may import into it; otherwise `Forbidden`,
/// the same for "no such station" and "not yours".
async fn station(state: &AppState, user: &User, text: &str) -> Result<StationChoice> {
    let id = Uuid::parse_str(text.trim()).ok();
    stations(state, user)
        .await?
        .into_iter()
        .find(|s| Some(s.id) == id)
        .ok_or_else(|| {
            Error::Forbidden(format!(
                "station {text:?} is not one you may import residents into"
            ))
        })
}

/// The problem with reading the upload's body, as the page says it.
fn unreadable(lang: Lang, e: &MultipartError) -> Error {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::unreadable(status, too_big(lang))
    } else {
        Error::unreadable(status, e.body_text())
    }
}

fn too_big(lang: Lang) -> String {
    lang.roster()
        .too_big
        .replace("{max}", &format!("{} MB", MAX_FILE >> 20))
}

/// `POST /web/residents/import`: the upload, answered with the preview.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    upload_inner(&state, lang, &user, multipart)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn upload_inner(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let mut multipart = multipart.map_err(|e| Error::unreadable(e.status(), e.body_text()))?;
    let (mut csrf, mut station_text, mut file) = (String::new(), String::new(), None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| unreadable(lang, &e))?
    {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|e| unreadable(lang, &e))?,
            Some("station") => {
                station_text = field.text().await.map_err(|e| unreadable(lang, &e))?;
            }
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let bytes = field.bytes().await.map_err(|e| unreadable(lang, &e))?;
                file = Some((name, bytes.to_vec()));
            }
            _ => {}
        }
    }
    user.check_csrf(&csrf)?;
    let station = station(state, &user.user, &station_text).await?;
    let r = lang.roster();
    let again = |status, message: String| {
        form_page(
            state,
            lang,
            user,
            status,
            Some(message),
            Some(&station_text),
        )
    };
    let Some((name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        return again(StatusCode::BAD_REQUEST, r.no_file.to_owned()).await;
    };
    if bytes.len() > MAX_FILE {
        return again(StatusCode::PAYLOAD_TOO_LARGE, too_big(lang)).await;
    }
    preview(state, lang, user, &station, &name, &bytes).await
}

/// Reads and checks the file, and shows the preview.
async fn preview(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    station: &StationChoice,
    file_name: &str,
    bytes: &[u8],
) -> Result<Response> {
    let analysis = analyse(state, lang, station, file_name, bytes).await?;
    let r = lang.roster();
    let ok = analysis.errors.is_empty();
    let page = PreviewPage {
        c: user.chrome(lang, "/web/residents/import"),
        r,
        station: station.name.clone(),
        station_id: station.id.to_string(),
        file_name: file_name.to_owned(),
        headers: field_labels(lang),
        rows: analysis.preview,
        ready: r
            .rows_ready
            .replace("{n}", &analysis.rows.len().to_string())
            .replace("{station}", &station.name),
        errors: analysis.errors,
        warnings: analysis.warnings,
        data: if ok {
            URL_SAFE_NO_PAD.encode(bytes)
        } else {
            String::new()
        },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, render(&page)?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    station: String,
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    data: String,
}

/// `POST /web/residents/import/confirm`: checks everything again, then creates.
pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, WebError> {
    confirm_inner(&state, lang, &user, &form)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn confirm_inner(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    form: &ConfirmForm,
) -> Result<Response> {
    user.check_csrf(&form.csrf)?;
    let station = station(state, &user.user, &form.station).await?;
    let bytes = URL_SAFE_NO_PAD
        .decode(form.data.trim())
        .map_err(|_| Error::bad_request("bad_file", "the form's file is not base64"))?;
    if bytes.is_empty() {
        return Err(Error::bad_request("no_file", lang.roster().no_file));
    }
    if bytes.len() > MAX_FILE {
        return Err(Error::unreadable(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_big(lang),
        ));
    }
    let analysis = analyse(state, lang, &station, &form.file_name, &bytes).await?;
    if !analysis.errors.is_empty() {
        // Something changed since the preview (or the form was made up): the preview
        // again, with its errors, and nothing created.
        return preview(state, lang, user, &station, &form.file_name, &bytes).await;
    }
    let principal = state.store.principal(&user.user).await?.ok_or_else(|| {
        Error::Forbidden("this account belongs to no district: it imports nothing".into())
    })?;
    let r = lang.roster();
    let station_id = station.id.to_string();
    // The upload form again, saying this roster is in already.
    let refused = async {
        form_page(
            state,
            lang,
            user,
            StatusCode::CONFLICT,
            Some(r.already_imported.to_owned()),
            Some(&station_id),
        )
        .await
    };
    let ids: Vec<ResidentId> = analysis
        .rows
        .iter()
        .map(|row| roster_id(&station, &row.profile))
        .collect();
    if any_stored(state, &ids).await? {
        // Confirmed before (the residents may have moved station since, so the duplicate
        // check above did not see them): nothing is made twice.
        return refused.await;
    }
    let mut created = Vec::new();
    let mut failure = None;
    for (row, id) in analysis.rows.iter().zip(ids) {
        match create(state, user, &principal, &station, id, &row.profile).await {
            Ok(id) => created.push((format!("/web/residents/{id}"), row.profile.name.clone())),
            Err(Error::Conflict(_)) if created.is_empty() => {
                // Another confirm of this file stored this row first: it makes the rest.
                return refused.await;
            }
            Err(e) => {
                tracing::error!(error = %e, row = row.number, "roster import stopped");
                failure = Some(e);
                break;
            }
        }
    }
    tracing::info!(
        user = %user.user.id, station = %station.id, created = created.len(),
        "roster imported on the web"
    );
    let summary = r
        .created
        .replace("{n}", &created.len().to_string())
        .replace("{station}", &station.name);
    let page = DonePage {
        c: user.chrome(lang, "/web/residents/import"),
        r,
        summary,
        failed: failure.is_some(),
        created,
    };
    let status = match failure {
        None => StatusCode::OK,
        Some(Error::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
        // The core's rules refused (the scope changed since the check, say).
        Some(Error::Forbidden(_)) => StatusCode::FORBIDDEN,
        Some(Error::Conflict(_)) => StatusCode::CONFLICT,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Ok((status, render(&page)?).into_response())
}

/// The id of the resident a roster row makes at `station`: a version 8 UUID from a
/// SHA-256 of the district, the station and the row's name and address as the
/// duplicate check folds them. The same row confirmed twice is the same case file.
fn roster_id(station: &StationChoice, profile: &Profile) -> ResidentId {
    use sha2::{Digest, Sha256};
    let (name, address) = duplicate_key(&profile.name, &profile.address);
    let mut hash = Sha256::new();
    hash.update(b"linli roster resident\0");
    hash.update(station.district.as_bytes());
    hash.update(station.id.as_bytes());
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(address.as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&hash.finalize()[..16]);
    ResidentId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Whether any of `ids` is a stored resident (in the projections, written with each
/// append).
async fn any_stored(state: &AppState, ids: &[ResidentId]) -> Result<bool> {
    for chunk in ids.chunks(500) {
        let mut q = Sql::new("SELECT COUNT(*) FROM resident_rows WHERE id IN ");
        q.bind_list(chunk.iter().map(|id| Bind::id(&id.0)));
        if fetch!(&state.store, q, (i64,), fetch_one)?.0 > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates one resident's case file through the core and stores it under `id`;
/// `Conflict` if a case file with that id is stored already.
async fn create(
    state: &AppState,
    user: &WebUser,
    principal: &Principal,
    station: &StationChoice,
    id: ResidentId,
    profile: &Profile,
) -> Result<Uuid> {
    let actor = state.store.web_actor(user.user.id).await?;
    let now = now_ms();
    let editor = Editor { principal, now };
    let file = CaseFile::create(
        actor,
        &editor,
        id,
        DistrictId(station.district),
        StationId(station.id),
        profile,
    )
    .map_err(|e| match e {
        sync_core::Error::Rejected(v) => Error::Forbidden(v.to_string()),
        other => Error::Internal(format!("creating a case file: {other}")),
    })?;
    let doc = file.into_doc();
    let changes: Vec<Change> = doc.get_changes(&[]);
    let place = place_of(&doc)
        .ok_or_else(|| Error::Internal(format!("new case file {} has no place", id.0)))?;
    let store = Announcing {
        store: &state.store,
        events: &state.events,
    };
    let outcome = store
        .append(Append {
            doc: DocId(id.0),
            place,
            expected_heads: &[],
            changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            hashes: changes.iter().map(Change::hash).collect(),
            after: &doc,
            device: None,
            user: Some(user.user.id),
            received_at: now,
        })
        .await?;
    match outcome {
        AppendOutcome::Stored(_) => Ok(id.0),
        // Stored already (another confirm of the same row): never overwritten.
        AppendOutcome::HeadsMoved => Err(Error::Conflict(format!("resident {} exists", id.0))),
    }
}

/// An upload's preview and confirm without a database, for the fuzzer (`fuzz/`):
/// reads `bytes` as the file `file_name`, checks it in both languages against a station
/// with no residents yet, and makes the case file of every row the check accepts
/// through the core, as confirming does. A file that does not read is `Ok(0)`; `Err`
/// names a row the check accepted and the core refused, which would let a preview
/// promise what the confirm then fails. Never panics, whatever the bytes.
#[doc(hidden)]
pub fn check_offline(file_name: &str, bytes: &[u8]) -> std::result::Result<usize, String> {
    let Ok(Some(table)) = read_table(file_name, bytes) else {
        return Ok(0);
    };
    let station = StationChoice {
        id: Uuid::from_u128(0x5A),
        district: Uuid::from_u128(0xD1),
        name: String::new(),
    };
    let principal = Principal {
        user: UserId(Uuid::from_u128(0xA0)),
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: DistrictId(station.district),
            stations: [StationId(station.id)].into(),
        },
    };
    let editor = Editor {
        principal: &principal,
        now: now_ms(),
    };
    let mut made = 0;
    for lang in [Lang::Zh, Lang::En] {
        let analysis = check_table(lang, &table, &HashSet::new());
        if !analysis.errors.is_empty() {
            continue;
        }
        for row in &analysis.rows {
            CaseFile::create(
                ActorId::random(),
                &editor,
                roster_id(&station, &row.profile),
                DistrictId(station.district),
                StationId(station.id),
                &row.profile,
            )
            .map_err(|e| format!("row {}: {e}", row.number))?;
            made += 1;
        }
    }
    Ok(made)
}

// ---- Reading and checking the file ------------------------------------------------

/// The rows of a file: (row number as the user sees it, cells).
type Table = Vec<(u64, Vec<String>)>;

/// A row ready to become a resident.
#[derive(Debug)]
struct Row {
    number: u64,
    profile: Profile,
}

#[derive(Debug, Default)]
struct Analysis {
    rows: Vec<Row>,
    preview: Vec<PreviewRow>,
    errors: Vec<Problem>,
    warnings: Vec<String>,
}

async fn analyse(
    state: &AppState,
    lang: Lang,
    station: &StationChoice,
    file_name: &str,
    bytes: &[u8],
) -> Result<Analysis> {
    let r = lang.roster();
    let file_problem = |message: String| Analysis {
        errors: vec![Problem {
            row: None,
            column: String::new(),
            message,
        }],
        ..Analysis::default()
    };
    let table = match read_table(file_name, bytes) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(file_problem(r.unknown_format.to_owned())),
        Err(why) => return Ok(file_problem(r.unreadable.replace("{why}", &why))),
    };
    let existing = existing_keys(state, station).await?;
    Ok(check_table(lang, &table, &existing))
}

/// Reads a file as a table; `Ok(None)` for a format this does not read.
fn read_table(file_name: &str, bytes: &[u8]) -> std::result::Result<Option<Table>, String> {
    let lower = file_name.to_lowercase();
    if lower.ends_with(".xlsx") || (!lower.ends_with(".csv") && bytes.starts_with(b"PK\x03\x04")) {
        read_xlsx(bytes).map(Some)
    } else if lower.ends_with(".csv") {
        read_csv(bytes).map(Some)
    } else {
        Ok(None)
    }
}

/// A CSV file in UTF-8 (with or without a byte-order mark), or else in GB18030, the
/// superset of the GBK that Chinese Excel saves CSV files in.
fn read_csv(bytes: &[u8]) -> std::result::Result<Table, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text: Cow<'_, str> = match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
            if had_errors {
                return Err("the text is neither UTF-8 nor GBK/GB18030".into());
            }
            text
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut table = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let line = record.position().map_or(0, |p| p.line());
        table.push((line, record.iter().map(str::to_owned).collect()));
    }
    Ok(table)
}

/// What an XLSX file may unpack to, by the sizes its zip directory declares: a 2 MB
/// upload must not become gigabytes in memory (a "zip bomb").
const MAX_UNPACKED: u64 = 64 << 20;

/// The first sheet of an XLSX workbook.
fn read_xlsx(bytes: &[u8]) -> std::result::Result<Table, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut unpacked: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| e.to_string())?;
        unpacked = unpacked.saturating_add(entry.size());
    }
    if unpacked > MAX_UNPACKED {
        return Err(format!(
            "it would unpack to {} MB, more than {} MB",
            unpacked >> 20,
            MAX_UNPACKED >> 20
        ));
    }
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes))
        .map_err(|e: calamine::XlsxError| e.to_string())?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| "the workbook has no sheet".to_owned())?
        .map_err(|e| e.to_string())?;
    let first = range.start().map_or(0, |(row, _)| u64::from(row));
    Ok(range
        .rows()
        .enumerate()
        .map(|(i, cells)| {
            let number = first + i as u64 + 1;
            (number, cells.iter().map(cell_text).collect())
        })
        .collect())
}

/// A cell as text. Whole numbers (years, days, phone numbers typed as numbers) come
/// out without a decimal point: `f64`'s `Display` writes `1935.0` as `1935`.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The profile field a header names, in Chinese or English, ignoring case, spaces,
/// underscores and brackets.
fn header_field(text: &str) -> Option<ProfileField> {
    use ProfileField as F;
    let key: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && !"_-()（）*:：".contains(*c))
        .flat_map(char::to_lowercase)
        .collect();
    Some(match key.as_str() {
        "姓名" | "名字" | "name" | "fullname" => F::Name,
        "地址" | "住址" | "家庭住址" | "居住地址" | "address" => F::Address,
        "电话" | "联系电话" | "电话号码" | "手机" | "手机号" | "手机号码" | "phone"
        | "telephone" | "tel" => F::Phone,
        "出生年份" | "出生年" | "birthyear" | "yearofbirth" => F::BirthYear,
        "居住情况" | "居住状况" | "livingsituation" => F::LivingSituation,
        "紧急联系人" | "emergencycontact" => F::EmergencyContact,
        "需求" | "服务需求" | "needs" => F::Needs,
        "风险等级" | "风险" | "risklevel" | "risk" => F::RiskLevel,
        "走访频率天" | "走访频率" | "走访间隔天" | "走访间隔" | "visiteverydays" | "visitevery"
        | "visitfrequencydays" => F::VisitEveryDays,
        _ => return None,
    })
}

/// The fields' names in the page's language, in `ProfileField::ALL` order.
fn field_labels(lang: Lang) -> Vec<&'static str> {
    let t = lang.msgs();
    ProfileField::ALL
        .iter()
        .map(|f| match f {
            ProfileField::Name => t.resident,
            ProfileField::Address => t.address,
            ProfileField::Phone => t.phone,
            ProfileField::BirthYear => t.birth_year,
            ProfileField::LivingSituation => t.living_situation,
            ProfileField::EmergencyContact => t.emergency_contact,
            ProfileField::Needs => t.needs,
            ProfileField::RiskLevel => t.risk_level,
            ProfileField::VisitEveryDays => t.visit_every_days,
        })
        .collect()
}

/// Folds text for comparisons: no case, no spaces or underscores.
fn fold(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The key two residents of a station must not share: name and address, folded.
fn duplicate_key(name: &str, address: &str) -> (String, String) {
    (fold(name), fold(address))
}

/// A code's label in a language.
type Label = dyn Fn(Lang, &str) -> &'static str;

/// A code given as the code itself or its label in either language.
fn code_of(
    text: &str,
    codes: &[&'static str],
    label: impl Fn(Lang, &str) -> &'static str,
) -> Option<&'static str> {
    let wanted = fold(text);
    codes.iter().copied().find(|code| {
        fold(code) == wanted
            || fold(label(Lang::Zh, code)) == wanted
            || fold(label(Lang::En, code)) == wanted
    })
}

/// A whole number, allowing a unit after it (年, 天, days).
fn whole_number(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = ["年", "天", "日", "days", "day"]
        .iter()
        .find_map(|unit| t.strip_suffix(unit))
        .unwrap_or(t)
        .trim();
    t.parse().ok()
}

/// The (folded) names and addresses of the station's residents.
async fn existing_keys(
    state: &AppState,
    station: &StationChoice,
) -> Result<HashSet<(String, String)>> {
    let mut q = Sql::new("SELECT r.name, r.address FROM resident_rows r WHERE r.station = ");
    q.bind(Bind::id(&station.id));
    let rows: Vec<(String, String)> = fetch!(&state.store, q, (String, String), fetch_all)?;
    Ok(rows
        .iter()
        .map(|(name, address)| duplicate_key(name, address))
        .collect())
}

/// Checks a whole table: header, then every row, every cell.
fn check_table(lang: Lang, table: &Table, existing: &HashSet<(String, String)>) -> Analysis {
    let r = lang.roster();
    let mut out = Analysis::default();
    let blank = |cells: &Vec<String>| cells.iter().all(|c| c.trim().is_empty());
    let mut rows = table.iter().filter(|(_, cells)| !blank(cells));
    let Some((header_row, header)) = rows.next() else {
        out.errors.push(Problem {
            row: None,
            column: String::new(),
            message: r.no_header.to_owned(),
        });
        return out;
    };

    // The header: which field each column holds.
    let mut columns: Vec<(usize, ProfileField, String)> = Vec::new();
    for (i, text) in header.iter().enumerate() {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match header_field(text) {
            Some(field) if columns.iter().any(|(_, f, _)| *f == field) => {
                out.errors.push(Problem {
                    row: Some(*header_row),
                    column: text.to_owned(),
                    message: r.column_twice.replace("{column}", text),
                });
            }
            Some(field) => columns.push((i, field, text.to_owned())),
            None => out
                .warnings
                .push(r.unknown_column.replace("{column}", text)),
        }
    }
    if !columns.iter().any(|(_, f, _)| *f == ProfileField::Name) {
        out.errors.push(Problem {
            row: Some(*header_row),
            column: String::new(),
            message: r.no_name_column.to_owned(),
        });
        return out;
    }

    let data: Vec<_> = rows.collect();
    if data.is_empty() {
        out.errors.push(Problem {
            row: None,
            column: String::new(),
            message: r.no_rows.to_owned(),
        });
        return out;
    }
    if data.len() > MAX_ROWS {
        out.errors.push(Problem {
            row: None,
            column: String::new(),
            message: r.too_many_rows.replace("{max}", &MAX_ROWS.to_string()),
        });
        return out;
    }

    let t = lang.msgs();
    let separator = if lang == Lang::Zh { "、" } else { ", " };
    let living_codes: Vec<&'static str> = LivingSituation::ALL.iter().map(|l| l.code()).collect();
    let risk_codes: Vec<&'static str> = RiskLevel::ALL.iter().map(|l| l.code()).collect();
    let choices = |codes: &[&'static str], label: &dyn Fn(&str) -> &'static str| {
        codes
            .iter()
            .map(|c| label(c))
            .collect::<Vec<_>>()
            .join(separator)
    };
    let mut seen: HashMap<(String, String), u64> = HashMap::new();

    for (number, cells) in data {
        let number = *number;
        let mut profile = empty_profile();
        let mut problems = Vec::new();
        let mut problem = |column: &str, message: String| {
            problems.push(Problem {
                row: Some(number),
                column: column.to_owned(),
                message,
            });
        };
        for (i, field, column) in &columns {
            let text = cells.get(*i).map_or("", |c| c.trim());
            let value = match field {
                ProfileField::BirthYear | ProfileField::VisitEveryDays => {
                    if text.is_empty() {
                        FieldValue::Empty
                    } else if let Some(n) = whole_number(text) {
                        FieldValue::Int(n)
                    } else {
                        problem(column, r.not_a_whole_number.replace("{value}", text));
                        continue;
                    }
                }
                ProfileField::LivingSituation | ProfileField::RiskLevel => {
                    let (codes, label): (&[&'static str], &Label) =
                        if *field == ProfileField::LivingSituation {
                            (&living_codes, &|l: Lang, c: &str| l.msgs().living(c))
                        } else {
                            (&risk_codes, &|l: Lang, c: &str| l.msgs().risk(c))
                        };
                    if text.is_empty() {
                        FieldValue::Empty
                    } else if let Some(code) = code_of(text, codes, label) {
                        FieldValue::Text(code.to_owned())
                    } else {
                        let here = |c: &str| label(lang, c);
                        problem(
                            column,
                            r.unknown_code
                                .replace("{value}", text)
                                .replace("{choices}", &choices(codes, &here)),
                        );
                        continue;
                    }
                }
                _ => FieldValue::Text(text.to_owned()),
            };
            // The core's rule for the field decides; the wording is the page's where
            // it can say it better.
            if let Err(why) = field.validate(&value) {
                let message = match field {
                    ProfileField::Name => r.name_required.to_owned(),
                    ProfileField::BirthYear => r.bad_birth_year.replace("{value}", text),
                    ProfileField::VisitEveryDays => r.bad_frequency.replace("{value}", text),
                    _ => r.rejected.replace("{why}", &why),
                };
                problem(column, message);
                continue;
            }
            set(&mut profile, *field, value);
        }
        let name_column = columns
            .iter()
            .find(|(_, f, _)| *f == ProfileField::Name)
            .map_or("", |(_, _, c)| c.as_str());
        if !profile.name.trim().is_empty() {
            let key = duplicate_key(&profile.name, &profile.address);
            if existing.contains(&key) {
                problem(name_column, r.duplicate_existing.to_owned());
            } else if let Some(first) = seen.get(&key) {
                problem(
                    name_column,
                    r.duplicate_in_file.replace("{row}", &first.to_string()),
                );
            } else {
                seen.insert(key, number);
            }
        }
        let cells = vec![
            profile.name.clone(),
            profile.address.clone(),
            profile.phone.clone(),
            profile
                .birth_year
                .map(|y| y.to_string())
                .unwrap_or_default(),
            profile
                .living_situation
                .map(|l| t.living(l.code()).to_owned())
                .unwrap_or_default(),
            profile.emergency_contact.clone(),
            profile.needs.clone(),
            profile
                .risk_level
                .map(|l| t.risk(l.code()).to_owned())
                .unwrap_or_default(),
            profile
                .visit_every_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ];
        out.preview.push(PreviewRow {
            number,
            cells,
            bad: !problems.is_empty(),
        });
        if problems.is_empty() {
            out.rows.push(Row { number, profile });
        } else {
            out.errors.extend(problems);
        }
    }
    out
}

/// A profile with nothing in it yet.
fn empty_profile() -> Profile {
    Profile {
        name: String::new(),
        address: String::new(),
        phone: String::new(),
        birth_year: None,
        living_situation: None,
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: None,
        visit_every_days: None,
    }
}

/// Puts a checked value into the profile.
fn set(profile: &mut Profile, field: ProfileField, value: FieldValue) {
    use ProfileField as F;
    let text = |v: &FieldValue| match v {
        FieldValue::Text(t) => t.clone(),
        _ => String::new(),
    };
    let int = |v: &FieldValue| match v {
        FieldValue::Int(n) => Some(*n),
        _ => None,
    };
    match field {
        F::Name => profile.name = text(&value),
        F::Address => profile.address = text(&value),
        F::Phone => profile.phone = text(&value),
        F::EmergencyContact => profile.emergency_contact = text(&value),
        F::Needs => profile.needs = text(&value),
        F::BirthYear => profile.birth_year = int(&value),
        F::VisitEveryDays => profile.visit_every_days = int(&value),
        F::LivingSituation => {
            profile.living_situation = LivingSituation::from_code(&text(&value));
        }
        F::RiskLevel => profile.risk_level = RiskLevel::from_code(&text(&value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> Table {
        rows.iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r.iter().map(|c| (*c).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn headers_in_either_language_and_any_order() {
        assert_eq!(header_field(" 姓名 "), Some(ProfileField::Name));
        assert_eq!(
            header_field("走访频率（天）"),
            Some(ProfileField::VisitEveryDays)
        );
        assert_eq!(
            header_field("Visit every (days)"),
            Some(ProfileField::VisitEveryDays)
        );
        assert_eq!(header_field("birth_year"), Some(ProfileField::BirthYear));
        assert_eq!(header_field("Birth Year"), Some(ProfileField::BirthYear));
        assert_eq!(header_field("备注"), None);
        let a = check_table(
            Lang::En,
            &table(&[
                &["风险等级", "备注", "Name", "居住情况", "出生年份"],
                &["高", "x", "王阿婆", "独居", "1938年"],
                &["medium", "", "李老伯", "with_spouse", "1941"],
            ]),
            &HashSet::new(),
        );
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.warnings.len(), 1);
        assert_eq!(a.rows.len(), 2);
        let p = &a.rows[0].profile;
        assert_eq!(p.risk_level, Some(RiskLevel::High));
        assert_eq!(p.living_situation, Some(LivingSituation::Alone));
        assert_eq!(p.birth_year, Some(1938));
    }

    #[test]
    fn every_bad_cell_is_named_with_row_and_column() {
        let existing = HashSet::from([duplicate_key("赵阿姨", "华沙路 1 号")]);
        let a = check_table(
            Lang::Zh,
            &table(&[
                &["姓名", "地址", "出生年份", "走访频率（天）", "风险等级"],
                &["", "a", "1940", "7", "low"],
                &["张三", "b", "1700", "0", "很高"],
                &["李四", "c", "abc", "7", ""],
                &["李四", "C ", "", "", ""],
                &["赵阿姨", "华沙路1号", "", "", ""],
            ]),
            &existing,
        );
        let at: Vec<(Option<u64>, &str)> = a
            .errors
            .iter()
            .map(|p| (p.row, p.column.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (Some(2), "姓名"),
                (Some(3), "出生年份"),
                (Some(3), "走访频率（天）"),
                (Some(3), "风险等级"),
                (Some(4), "出生年份"),
                (Some(5), "姓名"),
                (Some(6), "姓名"),
            ]
        );
        assert!(a.errors[5].message.contains("第 4 行"), "{:?}", a.errors[5]);
        assert!(a.rows.is_empty(), "no row is clean");
    }

    #[test]
    fn an_xlsx_that_unpacks_too_large_is_refused() {
        use std::io::Write;
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        out.start_file(
            "xl/worksheets/sheet1.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..65 {
            out.write_all(&zeros).unwrap();
        }
        let bytes = out.finish().unwrap().into_inner();
        assert!(bytes.len() < MAX_FILE, "small on the wire: {}", bytes.len());
        let refused = read_xlsx(&bytes).unwrap_err();
        assert!(refused.contains("unpack"), "{refused}");
    }

    #[test]
    fn csv_in_gbk_and_with_a_bom() {
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名,地址\n王阿婆,华沙路\n");
        let t = read_csv(&gbk).unwrap();
        assert_eq!(t[1].1, ["王阿婆", "华沙路"]);
        let t = read_csv("\u{feff}姓名\n王阿婆\n".as_bytes()).unwrap();
        assert_eq!(t[0].1, ["姓名"]);
        assert_eq!(read_table("x.pdf", b"%PDF").unwrap(), None);
    }
}
