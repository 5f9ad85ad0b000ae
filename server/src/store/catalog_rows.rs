//! The district catalogs as SQL rows (`catalog_rows`, migration `0005_catalog`): the
//! names of stations, alliances, units, projects, service and hazard types in both
//! languages, and which alliance each unit and project belongs to, so that the
//! coordinator pages can filter and count by alliance in SQL.
//!
//! A catalog is small (tens to hundreds of entries), so every append of a catalog
//! document rewrites all of its district's rows, in the append's transaction. The
//! rebuild and the check cover catalogs too, and a store opened on a database whose
//! catalogs have no rows yet (written before this table existed) projects them at once.

use super::projections::{Arg, Mismatch, Stmt};
use super::{Result, SqlStore, StoreError, heads_bytes, row_text};
use sqlx::Row;
use sync_core::automerge::Automerge;
use sync_core::doc::catalog::CatalogDoc;
use sync_core::ids::{DistrictId, DocId};
use sync_core::model::{Catalog, CatalogKind};
use sync_core::protocol::store::ServerStore;
use uuid::Uuid;

/// One catalog entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogRow {
    /// Which list.
    pub kind: CatalogKind,
    /// The entry's id.
    pub id: Uuid,
    /// Name in Chinese.
    pub name: String,
    /// Name in English.
    pub name_en: String,
    /// A unit's or project's alliance.
    pub parent: Option<Uuid>,
    /// Retired: old visits still name it, new ones are not offered it.
    pub archived: bool,
}

/// Every entry of `catalog`, in (kind, id) order.
pub(super) fn rows_of(catalog: &Catalog) -> Vec<CatalogRow> {
    let mut rows = Vec::new();
    macro_rules! list {
        ($field:ident, $kind:expr) => {
            rows.extend(catalog.$field.iter().map(|e| CatalogRow {
                kind: $kind,
                id: e.id.0,
                name: row_text(&e.name),
                name_en: row_text(&e.name_en),
                parent: e.parent,
                archived: e.archived,
            }))
        };
    }
    list!(stations, CatalogKind::Station);
    list!(alliances, CatalogKind::Alliance);
    list!(units, CatalogKind::Unit);
    list!(projects, CatalogKind::Project);
    list!(service_types, CatalogKind::ServiceType);
    list!(hazard_types, CatalogKind::HazardType);
    rows.sort();
    rows
}

/// A catalog document's district and rows; an error if it does not read as a catalog.
pub(super) fn project(doc: DocId, copy: Automerge) -> Result<(CatalogDoc, Vec<CatalogRow>)> {
    let unreadable = |e: sync_core::Error| {
        StoreError::Corrupt(format!("catalog {doc} cannot be projected: {e}"))
    };
    let catalog = CatalogDoc::from_doc(copy).map_err(unreadable)?;
    let rows = rows_of(&catalog.hydrate().map_err(unreadable)?);
    Ok((catalog, rows))
}

/// The statements that replace `district`'s rows with `rows`.
pub(super) fn plan(district: DistrictId, rows: &[CatalogRow]) -> Vec<Stmt> {
    let d = || Arg::Bytes(district.0.as_bytes().to_vec());
    let mut plan = vec![Stmt::new(
        "DELETE FROM catalog_rows WHERE district = $1",
        vec![d()],
    )];
    plan.extend(rows.iter().map(|r| {
        Stmt::new(
            "INSERT INTO catalog_rows (district, kind, id, name, name_en, parent, archived)
              VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                d(),
                Arg::Text(r.kind.code().to_owned()),
                Arg::Bytes(r.id.as_bytes().to_vec()),
                Arg::Text(r.name.clone()),
                Arg::Text(r.name_en.clone()),
                Arg::OptBytes(r.parent.map(|p| p.as_bytes().to_vec())),
                Arg::Bool(r.archived),
            ],
        )
    }));
    plan
}

/// How many times a rebuild or check retries a catalog that appends keep moving.
const ATTEMPTS: usize = 5;

impl SqlStore {
    /// A district's catalog, as rows in (kind, id) order: empty if it has none yet.
    pub async fn catalog_rows(&self, district: DistrictId) -> Result<Vec<CatalogRow>> {
        let rows = with_pool!(self, p => sqlx::query(
            "SELECT kind, id, name, name_en, parent, archived FROM catalog_rows WHERE district = $1")
            .bind(district.0.as_bytes().to_vec())
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| Ok((
                r.try_get::<String, _>("kind")?,
                r.try_get::<Vec<u8>, _>("id")?,
                r.try_get::<String, _>("name")?,
                r.try_get::<String, _>("name_en")?,
                r.try_get::<Option<Vec<u8>>, _>("parent")?,
                r.try_get::<bool, _>("archived")?,
            )))
            .collect::<Result<Vec<_>, sqlx::Error>>()?);
        let uuid = |b: &[u8]| {
            Uuid::from_slice(b)
                .map_err(|_| StoreError::Corrupt("a catalog row's id is not 16 bytes".into()))
        };
        let mut out = rows
            .into_iter()
            .map(|(kind, id, name, name_en, parent, archived)| {
                Ok(CatalogRow {
                    kind: CatalogKind::from_code(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown catalog kind {kind:?}"))
                    })?,
                    id: uuid(&id)?,
                    name,
                    name_en,
                    parent: parent.as_deref().map(uuid).transpose()?,
                    archived,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    /// Catalog document ids, in order.
    async fn catalogs(&self) -> Result<Vec<DocId>> {
        self.ids(
            "SELECT id FROM documents WHERE station IS NULL ORDER BY id",
            &[],
        )
        .await
    }

    /// Rewrites every catalog's rows from its document; the catalogs that changed
    /// under every attempt are returned (their rows are as the appends left them).
    pub(super) async fn rebuild_catalogs(&self) -> Result<(usize, Vec<DocId>)> {
        let (mut written, mut busy) = (0, Vec::new());
        'catalogs: for doc in self.catalogs().await? {
            for _ in 0..ATTEMPTS {
                let Some(loaded) = self.load(doc).await? else {
                    continue 'catalogs;
                };
                let heads = heads_bytes(&loaded.get_heads());
                let (catalog, rows) = project(doc, loaded)?;
                let statements = plan(catalog.district(), &rows);
                if self.write_if_unchanged(doc, &heads, statements).await? {
                    written += 1;
                    continue 'catalogs;
                }
            }
            busy.push(doc);
        }
        Ok((written, busy))
    }

    /// Compares every catalog's rows with its document.
    pub(super) async fn check_catalogs(&self) -> Result<Vec<Mismatch>> {
        let mut mismatches = Vec::new();
        for doc in self.catalogs().await? {
            let mut problem = None;
            for _ in 0..ATTEMPTS {
                let Some(loaded) = self.load(doc).await? else {
                    break;
                };
                let heads = heads_bytes(&loaded.get_heads());
                let (catalog, expected) = match project(doc, loaded) {
                    Ok(projected) => projected,
                    Err(e) => {
                        problem = Some(e.to_string());
                        break;
                    }
                };
                let stored = self.catalog_rows(catalog.district()).await?;
                problem = (stored != expected).then(|| {
                    format!(
                        "the catalog's rows differ from its document: {} stored, {} expected",
                        stored.len(),
                        expected.len()
                    )
                });
                // Other rows are expected if an append landed meanwhile.
                if problem.is_none() || self.stored_heads(doc).await?.as_ref() == Some(&heads) {
                    break;
                }
            }
            if let Some(problem) = problem {
                mismatches.push(Mismatch { doc, problem });
            }
        }
        Ok(mismatches)
    }

    /// Projects the catalogs of a database written before `catalog_rows` existed.
    pub(super) async fn backfill_catalogs(&self) -> Result<()> {
        let (rows, catalogs): (i64, i64) = with_pool!(self, p => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM catalog_rows), (SELECT COUNT(*) FROM documents WHERE station IS NULL)")
            .fetch_one(p)
            .await?);
        if rows == 0 && catalogs > 0 {
            let (written, busy) = self.rebuild_catalogs().await?;
            tracing::info!(written, busy = busy.len(), "catalogs projected");
        }
        Ok(())
    }
}
