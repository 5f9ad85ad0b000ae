//! The district catalog: stations, alliances, units, projects, service types and hazard
//! types. Written by coordinators, read everywhere in the district.

use super::schema::*;
use crate::error::Result;
use crate::ids::*;
use crate::model::*;
use crate::rules::Editor;
use automerge::{
    ActorId, Automerge, ChangeHash, ROOT, ReadDoc, ScalarValue, transaction::Transactable,
};
use uuid::Uuid;

/// A district's catalog document.
#[derive(Debug, Clone)]
pub struct CatalogDoc {
    doc: Automerge,
    district: DistrictId,
}

/// One entry to write into the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInput<'a> {
    /// Which list.
    pub kind: CatalogKind,
    /// The entry's id.
    pub id: Uuid,
    /// Name in Chinese.
    pub name: &'a str,
    /// Name in English.
    pub name_en: &'a str,
    /// The containing entry (a unit's or project's alliance).
    pub parent: Option<Uuid>,
    /// Retired.
    pub archived: bool,
}

impl CatalogDoc {
    /// Creates the catalog of a district.
    pub fn create(actor: ActorId, editor: &Editor<'_>, district: DistrictId) -> Result<Self> {
        let mut doc = Automerge::new().with_actor(actor);
        super::commit_checked(&mut doc, editor, |tx| {
            tx.put(ROOT, SCHEMA, ScalarValue::Uint(CURRENT_SCHEMA))?;
            tx.put(ROOT, KIND, KIND_CATALOG)?;
            tx.put(ROOT, ID, bytes_of(&district.0))?;
            tx.put(ROOT, DISTRICT, bytes_of(&district.0))?;
            for kind in CatalogKind::ALL {
                tx.put_object(ROOT, kind.code(), automerge::ObjType::Map)?;
            }
            Ok(())
        })?;
        Ok(CatalogDoc { doc, district })
    }

    /// Wraps a loaded document, checking that it is a catalog this build can read.
    pub fn from_doc(doc: Automerge) -> Result<Self> {
        let id = super::check_header(&doc, KIND_CATALOG)?;
        Ok(CatalogDoc {
            doc,
            district: DistrictId(id),
        })
    }

    /// The district.
    pub fn district(&self) -> DistrictId {
        self.district
    }

    /// The underlying document.
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// Gives the document back.
    pub fn into_doc(self) -> Automerge {
        self.doc
    }

    /// Adds or updates entries in one change.
    pub fn put_entries(
        &mut self,
        editor: &Editor<'_>,
        entries: &[EntryInput<'_>],
    ) -> Result<Option<ChangeHash>> {
        super::commit_checked(&mut self.doc, editor, |tx| {
            for e in entries {
                let list = ensure_map(tx, &ROOT, e.kind.code())?;
                let m = ensure_map(tx, &list, &e.id.to_string())?;
                put_if_changed(tx, &m, E_NAME, ScalarValue::Str(e.name.into()))?;
                put_if_changed(tx, &m, E_NAME_EN, ScalarValue::Str(e.name_en.into()))?;
                put_opt(tx, &m, E_PARENT, e.parent.as_ref().map(bytes_of))?;
                put_if_changed(tx, &m, E_ARCHIVED, ScalarValue::Boolean(e.archived))?;
            }
            Ok(())
        })
    }

    /// The whole catalog, each list ordered by name then id.
    pub fn hydrate(&self) -> Result<Catalog> {
        Ok(Catalog {
            stations: read_list(&self.doc, CatalogKind::Station)?,
            alliances: read_list(&self.doc, CatalogKind::Alliance)?,
            units: read_list(&self.doc, CatalogKind::Unit)?,
            projects: read_list(&self.doc, CatalogKind::Project)?,
            service_types: read_list(&self.doc, CatalogKind::ServiceType)?,
            hazard_types: read_list(&self.doc, CatalogKind::HazardType)?,
        })
    }
}

pub(crate) fn read_entry<R: ReadDoc, I: From<Uuid>>(
    doc: &R,
    list: &automerge::ObjId,
    id: Uuid,
) -> Result<Option<CatalogEntry<I>>> {
    let Some(m) = get_obj(doc, list, &id.to_string()) else {
        return Ok(None);
    };
    Ok(Some(CatalogEntry {
        id: I::from(id),
        name: str_or_empty(doc, &m, E_NAME)?,
        name_en: str_or_empty(doc, &m, E_NAME_EN)?,
        parent: opt_id(doc, &m, E_PARENT)?,
        archived: bool_or_false(doc, &m, E_ARCHIVED)?,
    }))
}

fn read_list<I: From<Uuid>>(doc: &Automerge, kind: CatalogKind) -> Result<Vec<CatalogEntry<I>>> {
    let Some(list) = get_obj(doc, &ROOT, kind.code()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in id_keys::<_, Uuid>(doc, &list)? {
        if let Some(e) = read_entry::<_, Uuid>(doc, &list, id)? {
            out.push(e);
        }
    }
    out.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    Ok(out
        .into_iter()
        .map(|e| CatalogEntry {
            id: I::from(e.id),
            name: e.name,
            name_en: e.name_en,
            parent: e.parent,
            archived: e.archived,
        })
        .collect())
}
