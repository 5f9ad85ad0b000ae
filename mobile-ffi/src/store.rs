//! The phone's durable store: one SQLite file (WAL, `synchronous=FULL`, so a committed
//! write is on disk) whose resident data are sealed with the app's key.
//!
//! - `meta`: the key check, the feed cursor, the held-list flag, the device credential.
//! - `docs`: per document its sync state (acked heads — the server's receipts —,
//!   pending and repair state), sealed, plus two plain flags the protocol queries.
//! - `chunks`: per document a snapshot (`seq` 0 after a compaction) and the change
//!   chunks appended since, each sealed. A saved visit appends one small chunk; the
//!   chunks are folded into a new snapshot every [`COMPACT_AFTER`] writes.
//! - `refused`: per quarantine number an upload the server refused, sealed: the
//!   document as the phone held it, which changes were refused, the reason, and a
//!   coordinator's dismissal once one arrives. Kept until a person decides (schema 2).
//! - `summaries`: per document what the lists show, sealed, made by the host's
//!   [`Summarizer`] from the document in the transaction of every write to it (or
//!   deleted there, to be rebuilt when next read), so it is never older than the
//!   document it summarises.
//!
//! Ids (UUIDs) and sizes are stored in the clear; everything about a resident is sealed.

use crate::crypto::{Cipher, CryptoError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use sync_core::automerge::{Automerge, ChangeHash};
use sync_core::ids::DocId;
use sync_core::protocol::envelope::Decision;
use sync_core::protocol::store::{DocSyncState, Refused, ReplicaStore};

/// Change chunks kept beside a snapshot before they are folded into a new one.
pub(crate) const COMPACT_AFTER: i64 = 32;

/// 1: documents, chunks, summaries; 2: refused uploads.
const SCHEMA_VERSION: i64 = 2;
const KEY_CHECK: &[u8] = b"linli phone store key check v1";
/// The meta key of a revoked device's sealed export (`sync_core::protocol::export`).
pub const REVOKED_EXPORT: &str = "revoked_export";
/// The meta key of the device's export key, from its enrolment.
pub const EXPORT_KEY: &str = "export_key";

/// The file's name inside the folder the app gives.
pub const FILE_NAME: &str = "linli-phone.db";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not open this store.
    #[error("the key does not open this store")]
    WrongKey,
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The folder could not be created.
    #[error("cannot create the store's folder: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value is damaged (it does not decrypt or decode although the key is right).
    #[error("damaged store: {0}")]
    Damaged(String),
    /// Encryption failed.
    #[error("encryption: {0}")]
    Crypto(String),
}

impl From<CryptoError> for StoreError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Open => StoreError::Damaged(e.to_string()),
            CryptoError::Random(m) => StoreError::Crypto(m),
        }
    }
}

type R<T> = Result<T, StoreError>;

/// Sync state as stored (sealed).
#[derive(Serialize, Deserialize)]
struct SealedState {
    acked: Vec<[u8; 32]>,
    known: bool,
    pending: bool,
    fallback: Option<(Vec<u8>, Vec<u8>)>,
    /// The heads the stored chunks add up to.
    saved: Vec<[u8; 32]>,
}

/// A refused upload as stored (sealed, bound to its quarantine number).
#[derive(Serialize, Deserialize)]
struct SealedRefused {
    doc: [u8; 16],
    code: String,
    message: String,
    saved: Vec<u8>,
    changes: Vec<[u8; 32]>,
    dismissed: Option<String>,
}

/// Makes a document's list summary (plain bytes; the store seals them), or `None`;
/// given the summary stored before this write when there is one, so it can follow on
/// from it instead of reading the whole document.
pub type Summarizer = fn(&Automerge, Option<Previous<'_>>) -> Option<Vec<u8>>;

/// The summary stored for a document and the heads it was made at.
#[derive(Clone, Copy, Debug)]
pub struct Previous<'a> {
    /// The heads of the stored document the summary describes.
    pub heads: &'a [sync_core::automerge::ChangeHash],
    /// The summary, as the summarizer made it.
    pub summary: &'a [u8],
}

/// The phone's store. Implements the core's [`ReplicaStore`].
pub struct Store {
    conn: Connection,
    cipher: Cipher,
    summarize: Option<Summarizer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn hashes(h: &[ChangeHash]) -> Vec<[u8; 32]> {
    h.iter().map(|c| c.0).collect()
}

fn change_hashes(h: &[[u8; 32]]) -> Vec<ChangeHash> {
    h.iter().map(|c| ChangeHash(*c)).collect()
}

impl Store {
    /// Opens (or creates) the store in `dir` with `key`. A wrong key is refused before
    /// anything is written.
    pub fn open(dir: &Path, key: &[u8]) -> R<Store> {
        let cipher = Cipher::new(key).ok_or(StoreError::WrongKey)?;
        std::fs::create_dir_all(dir)?;
        let conn = Connection::open(dir.join(FILE_NAME))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn,
            cipher,
            summarize: None,
        };
        let exists: bool = store.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if exists {
            store.check_key()?;
        }
        // Only now, with the key known to be right (or the file new), change anything.
        store.conn.pragma_update(None, "journal_mode", "WAL")?;
        store.conn.pragma_update(None, "synchronous", "FULL")?;
        store.conn.pragma_update(None, "secure_delete", "ON")?;
        if !exists {
            store.create()?;
        }
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Damaged(format!(
                "the store was written by a newer version of the app (schema {version})"
            )));
        }
        if version < 2 {
            store.conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS refused (quarantine INTEGER PRIMARY KEY, data BLOB NOT NULL);
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        Ok(store)
    }

    /// Has every document write store the document's summary in the same transaction.
    pub fn set_summarizer(&mut self, summarize: Summarizer) {
        self.summarize = Some(summarize);
    }

    /// Starts a batch: every write until [`Store::end_batch`] commits together, with one
    /// `fsync`, or not at all. A sync applies each response as one batch.
    pub fn begin_batch(&mut self) -> R<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Ends a batch: commits it, or rolls it back.
    pub fn end_batch(&mut self, commit: bool) -> R<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if commit {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        } else {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Runs `write` in a transaction of its own, or in a savepoint of the batch under way.
    fn write_tx<T>(&mut self, write: impl FnOnce(&Connection) -> R<T>) -> R<T> {
        if self.conn.is_autocommit() {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = write(&tx)?;
            tx.commit()?;
            Ok(out)
        } else {
            let sp = self.conn.savepoint()?;
            let out = write(&sp)?;
            sp.commit()?;
            Ok(out)
        }
    }

    fn summary_of(&self, doc: &Automerge, previous: Option<Previous<'_>>) -> Option<Vec<u8>> {
        self.summarize.and_then(|f| f(doc, previous))
    }

    /// One document's stored summary, opened; `None` if there is none or it does not
    /// open (the summarizer then reads the whole document, as without one).
    fn stored_summary(&self, id: &[u8]) -> R<Option<Vec<u8>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM summaries WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(sealed.and_then(|s| self.cipher.open(&aad(&[b"summaries", id]), &s).ok()))
    }

    fn check_key(&self) -> R<()> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let sealed =
            sealed.ok_or_else(|| StoreError::Damaged("the store has no key check".into()))?;
        match self.cipher.open(&aad(&[b"meta", b"key_check"]), &sealed) {
            Ok(plain) if plain == KEY_CHECK => Ok(()),
            _ => Err(StoreError::WrongKey),
        }
    }

    fn create(&self) -> R<()> {
        let check = self
            .cipher
            .seal(&aad(&[b"meta", b"key_check"]), KEY_CHECK)?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE docs (
                 id BLOB PRIMARY KEY,
                 pending INTEGER NOT NULL,
                 known INTEGER NOT NULL,
                 state BLOB NOT NULL,
                 next_chunk INTEGER NOT NULL
             );
             CREATE TABLE chunks (
                 doc BLOB NOT NULL,
                 seq INTEGER NOT NULL,
                 bytes BLOB NOT NULL,
                 PRIMARY KEY (doc, seq)
             ) WITHOUT ROWID;
             CREATE TABLE summaries (id BLOB PRIMARY KEY, data BLOB NOT NULL);
             CREATE TABLE refused (quarantine INTEGER PRIMARY KEY, data BLOB NOT NULL);
             PRAGMA user_version = 2;",
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('key_check', ?1)",
            params![check],
        )?;
        tx.commit()?;
        Ok(())
    }

    // ---- sealed meta values -------------------------------------------------------

    /// A sealed meta value.
    pub fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        sealed
            .map(|s| Ok(self.cipher.open(&aad(&[b"meta", key.as_bytes()]), &s)?))
            .transpose()
    }

    /// Stores a sealed meta value.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> R<()> {
        let sealed = self.cipher.seal(&aad(&[b"meta", key.as_bytes()]), value)?;
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, sealed],
        )?;
        Ok(())
    }

    /// Deletes a meta value.
    pub fn delete_meta(&self, key: &str) -> R<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    fn meta_u64(&self, key: &str) -> R<u64> {
        match self.meta(key)? {
            None => Ok(0),
            Some(b) => {
                let bytes: [u8; 8] = b
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Damaged(format!("{key} is not a number")))?;
                Ok(u64::from_le_bytes(bytes))
            }
        }
    }

    /// Deletes every document, summary, refused upload, credential and cursor: what a
    /// revoked device must do. The key check stays, so the same key opens the empty
    /// store; with `keep_export`, so does a revoked device's sealed export
    /// ([`REVOKED_EXPORT`]).
    pub fn wipe(&mut self, keep_export: bool) -> R<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM chunks; DELETE FROM docs; DELETE FROM summaries; DELETE FROM refused;",
        )?;
        tx.execute(
            "DELETE FROM meta WHERE key <> 'key_check' AND (key <> ?1 OR NOT ?2)",
            params![REVOKED_EXPORT, keep_export],
        )?;
        tx.commit()?;
        // Rewrite the file so deleted pages do not linger in the WAL.
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")?;
        Ok(())
    }

    // ---- summaries ----------------------------------------------------------------

    /// A resident's sealed summary, if current.
    pub fn summary(&self, doc: DocId) -> R<Option<Vec<u8>>> {
        let id = doc.0.as_bytes().to_vec();
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM summaries WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .optional()?;
        sealed
            .map(|s| Ok(self.cipher.open(&aad(&[b"summaries", &id]), &s)?))
            .transpose()
    }

    /// Every current summary, by document.
    pub fn summaries(&self) -> R<Vec<(DocId, Vec<u8>)>> {
        let mut stmt = self.conn.prepare("SELECT id, data FROM summaries")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, sealed) = row?;
            let doc = doc_id(&id)?;
            out.push((doc, self.cipher.open(&aad(&[b"summaries", &id]), &sealed)?));
        }
        Ok(out)
    }

    /// Stores a summary, if the document is still held.
    pub fn set_summary(&self, doc: DocId, data: &[u8]) -> R<()> {
        let id = doc.0.as_bytes().to_vec();
        let sealed = self.cipher.seal(&aad(&[b"summaries", &id]), data)?;
        self.conn.execute(
            "INSERT INTO summaries (id, data) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM docs WHERE id = ?1)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            params![id, sealed],
        )?;
        Ok(())
    }

    // ---- documents ----------------------------------------------------------------

    fn sealed_state(&self, id: &[u8]) -> R<Option<(SealedState, i64)>> {
        let row: Option<(Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT state, next_chunk FROM docs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((sealed, next)) = row else {
            return Ok(None);
        };
        let plain = self.cipher.open(&aad(&[b"docs", id]), &sealed)?;
        let state: SealedState = postcard::from_bytes(&plain)
            .map_err(|e| StoreError::Damaged(format!("a sync state does not decode: {e}")))?;
        Ok(Some((state, next)))
    }

    fn seal_state(&self, id: &[u8], state: &SealedState) -> R<Vec<u8>> {
        let plain = postcard::to_stdvec(state)
            .map_err(|e| StoreError::Crypto(format!("encoding a sync state: {e}")))?;
        Ok(self.cipher.seal(&aad(&[b"docs", id]), &plain)?)
    }

    /// Writes a document's chunks, state and summary in one transaction: `fresh`
    /// replaces every chunk with one snapshot; otherwise `bytes` is appended as the next
    /// chunk. Without a summary the old one is deleted.
    fn write_doc(
        &mut self,
        doc: DocId,
        bytes: &[u8],
        fresh: bool,
        saved: Vec<[u8; 32]>,
        state: &DocSyncState,
        summary: Option<Vec<u8>>,
    ) -> R<()> {
        let id = doc.0.as_bytes().to_vec();
        let next = if fresh {
            0
        } else {
            self.sealed_state(&id)?.map_or(0, |(_, n)| n)
        };
        let sealed_state = self.seal_state(
            &id,
            &SealedState {
                acked: hashes(&state.acked),
                known: state.known_to_server,
                pending: state.pending,
                fallback: state.fallback.clone(),
                saved,
            },
        )?;
        let chunk = if bytes.is_empty() {
            None
        } else {
            let seq = next.to_le_bytes();
            Some(self.cipher.seal(&aad(&[b"chunks", &id, &seq]), bytes)?)
        };
        let summary = summary
            .map(|plain| self.cipher.seal(&aad(&[b"summaries", &id]), &plain))
            .transpose()?;
        self.write_tx(|tx| {
            if fresh {
                tx.execute("DELETE FROM chunks WHERE doc = ?1", [&id])?;
            }
            let next_after = if let Some(chunk) = &chunk {
                tx.execute(
                    "INSERT INTO chunks (doc, seq, bytes) VALUES (?1, ?2, ?3)",
                    params![id, next, chunk],
                )?;
                next + 1
            } else {
                next
            };
            tx.execute(
                "INSERT INTO docs (id, pending, known, state, next_chunk) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET pending = excluded.pending, known = excluded.known,
                     state = excluded.state, next_chunk = excluded.next_chunk",
                params![
                    id,
                    state.pending || state.fallback.is_some(),
                    state.known_to_server,
                    sealed_state,
                    next_after
                ],
            )?;
            match &summary {
                Some(sealed) => tx.execute(
                    "INSERT INTO summaries (id, data) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                    params![id, sealed],
                )?,
                None => tx.execute("DELETE FROM summaries WHERE id = ?1", [&id])?,
            };
            Ok(())
        })
    }

    /// How many chunks a document is stored in (for tests and benchmarks).
    pub fn chunk_count(&self, doc: DocId) -> R<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM chunks WHERE doc = ?1",
            [doc.0.as_bytes().as_slice()],
            |r| r.get(0),
        )?)
    }

    fn ids(&self, sql: &str) -> R<Vec<DocId>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(doc_id(&row?)?);
        }
        Ok(out)
    }
}

fn doc_id(bytes: &[u8]) -> R<DocId> {
    uuid::Uuid::from_slice(bytes)
        .map(DocId)
        .map_err(|e| StoreError::Damaged(format!("a stored id is not a UUID: {e}")))
}

impl ReplicaStore for Store {
    type Error = StoreError;

    fn doc_ids(&self) -> R<Vec<DocId>> {
        self.ids("SELECT id FROM docs ORDER BY id")
    }

    fn load_doc(&self, doc: DocId) -> R<Option<Vec<u8>>> {
        let id = doc.0.as_bytes().to_vec();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, bytes FROM chunks WHERE doc = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([&id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        let mut any = false;
        for row in rows {
            let (seq, sealed) = row?;
            let plain = self
                .cipher
                .open(&aad(&[b"chunks", &id, &seq.to_le_bytes()]), &sealed)?;
            out.extend_from_slice(&plain);
            any = true;
        }
        Ok(any.then_some(out))
    }

    fn save_doc(&mut self, doc: DocId, saved: &[u8], state: &DocSyncState) -> R<()> {
        let loaded = Automerge::load(saved).ok();
        let heads = loaded
            .as_ref()
            .map(|d| hashes(&d.get_heads()))
            .unwrap_or_default();
        let summary = loaded.as_ref().and_then(|d| self.summary_of(d, None));
        self.write_doc(doc, saved, true, heads, state, summary)
    }

    fn save_doc_changes(&mut self, doc: DocId, current: &Automerge, state: &DocSyncState) -> R<()> {
        let id = doc.0.as_bytes().to_vec();
        let heads = hashes(&current.get_heads());
        let stored = self.sealed_state(&id)?;
        let has_chunks = self.chunk_count(doc)? > 0;
        let incremental = match &stored {
            Some((s, next)) if has_chunks && *next < COMPACT_AFTER => {
                let saved = change_hashes(&s.saved);
                saved
                    .iter()
                    .all(|h| current.get_change_meta_by_hash(h).is_some())
                    .then_some(saved)
            }
            _ => None,
        };
        let previous = match (&stored, self.summarize.is_some()) {
            (Some((s, _)), true) => self
                .stored_summary(&id)?
                .map(|summary| (change_hashes(&s.saved), summary)),
            _ => None,
        };
        let summary = self.summary_of(
            current,
            previous
                .as_ref()
                .map(|(heads, summary)| Previous { heads, summary }),
        );
        match incremental {
            Some(saved) => {
                let bytes = current.save_after(&saved);
                self.write_doc(doc, &bytes, false, heads, state, summary)
            }
            None => self.write_doc(doc, &current.save(), true, heads, state, summary),
        }
    }

    fn sync_state(&self, doc: DocId) -> R<Option<DocSyncState>> {
        Ok(self
            .sealed_state(doc.0.as_bytes())?
            .map(|(s, _)| DocSyncState {
                acked: change_hashes(&s.acked),
                known_to_server: s.known,
                pending: s.pending,
                fallback: s.fallback,
            }))
    }

    fn saved_heads(&self, doc: DocId) -> R<Option<Vec<sync_core::automerge::ChangeHash>>> {
        Ok(self
            .sealed_state(doc.0.as_bytes())?
            .map(|(s, _)| change_hashes(&s.saved))
            .filter(|heads| !heads.is_empty()))
    }

    fn pending_docs(&self) -> R<Vec<DocId>> {
        self.ids("SELECT id FROM docs WHERE pending ORDER BY id")
    }

    fn known_docs(&self) -> R<Vec<DocId>> {
        self.ids("SELECT id FROM docs WHERE known ORDER BY id")
    }

    fn save_sync_state(&mut self, doc: DocId, state: &DocSyncState) -> R<()> {
        let id = doc.0.as_bytes().to_vec();
        let Some((old, _)) = self.sealed_state(&id)? else {
            return Ok(());
        };
        let sealed = self.seal_state(
            &id,
            &SealedState {
                acked: hashes(&state.acked),
                known: state.known_to_server,
                pending: state.pending,
                fallback: state.fallback.clone(),
                saved: old.saved,
            },
        )?;
        self.conn.execute(
            "UPDATE docs SET pending = ?2, known = ?3, state = ?4 WHERE id = ?1",
            params![
                id,
                state.pending || state.fallback.is_some(),
                state.known_to_server,
                sealed
            ],
        )?;
        Ok(())
    }

    fn purge(&mut self, doc: DocId) -> R<()> {
        let id = doc.0.as_bytes().to_vec();
        self.write_tx(|tx| {
            tx.execute("DELETE FROM chunks WHERE doc = ?1", [&id])?;
            tx.execute("DELETE FROM docs WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM summaries WHERE id = ?1", [&id])?;
            Ok(())
        })
    }

    fn cursor(&self) -> R<u64> {
        self.meta_u64("cursor")
    }

    fn set_cursor(&mut self, cursor: u64) -> R<()> {
        self.set_meta("cursor", &cursor.to_le_bytes())
    }

    fn need_held(&self) -> R<bool> {
        Ok(self.meta_u64("need_held")? != 0)
    }

    fn set_need_held(&mut self, need: bool) -> R<()> {
        self.set_meta("need_held", &u64::from(need).to_le_bytes())
    }

    fn put_refused(&mut self, refused: &Refused) -> R<()> {
        let number = refused_key(refused.quarantine)?;
        let plain = postcard::to_stdvec(&SealedRefused {
            doc: *refused.doc.0.as_bytes(),
            code: refused.code.clone(),
            message: refused.message.clone(),
            saved: refused.saved.clone(),
            changes: hashes(&refused.changes),
            dismissed: refused.dismissed.as_ref().map(|d| d.note.clone()),
        })
        .map_err(|e| StoreError::Crypto(format!("encoding a refused upload: {e}")))?;
        let sealed = self
            .cipher
            .seal(&aad(&[b"refused", &number.to_le_bytes()]), &plain)?;
        self.conn.execute(
            "INSERT INTO refused (quarantine, data) VALUES (?1, ?2)
             ON CONFLICT (quarantine) DO UPDATE SET data = excluded.data",
            params![number, sealed],
        )?;
        Ok(())
    }

    fn refused(&self) -> R<Vec<Refused>> {
        let mut stmt = self
            .conn
            .prepare("SELECT quarantine, data FROM refused ORDER BY quarantine")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (number, sealed) = row?;
            let plain = self
                .cipher
                .open(&aad(&[b"refused", &number.to_le_bytes()]), &sealed)?;
            let r: SealedRefused = postcard::from_bytes(&plain).map_err(|e| {
                StoreError::Damaged(format!("a refused upload does not decode: {e}"))
            })?;
            let quarantine = u64::try_from(number)
                .map_err(|_| StoreError::Damaged("a negative quarantine number".into()))?;
            out.push(Refused {
                quarantine,
                doc: DocId(uuid::Uuid::from_bytes(r.doc)),
                code: r.code,
                message: r.message,
                saved: r.saved,
                changes: change_hashes(&r.changes),
                dismissed: r.dismissed.map(|note| Decision {
                    quarantine,
                    accepted: false,
                    note,
                }),
            });
        }
        Ok(out)
    }

    fn remove_refused(&mut self, quarantine: u64) -> R<()> {
        let number = refused_key(quarantine)?;
        self.conn
            .execute("DELETE FROM refused WHERE quarantine = ?1", [number])?;
        Ok(())
    }
}

/// A quarantine number as SQLite's integer key.
fn refused_key(quarantine: u64) -> R<i64> {
    i64::try_from(quarantine)
        .map_err(|_| StoreError::Damaged(format!("quarantine number {quarantine} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::automerge::transaction::Transactable;
    use sync_core::automerge::{ROOT, ReadDoc};

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_wrong_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), &key(1)).unwrap();
        s.set_cursor(42).unwrap();
        drop(s);
        let before = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert!(matches!(
            Store::open(dir.path(), &key(2)),
            Err(StoreError::WrongKey)
        ));
        assert!(matches!(
            Store::open(dir.path(), &[1; 16]),
            Err(StoreError::WrongKey)
        ));
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), before);
        assert_eq!(
            Store::open(dir.path(), &key(1)).unwrap().cursor().unwrap(),
            42
        );
    }

    #[test]
    fn a_batch_commits_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), &key(1)).unwrap();
        let (a, b) = (
            DocId(uuid::Uuid::from_u128(1)),
            DocId(uuid::Uuid::from_u128(2)),
        );
        let doc = Automerge::new();
        let state = DocSyncState::default();
        s.begin_batch().unwrap();
        s.save_doc_changes(a, &doc, &state).unwrap();
        s.set_cursor(5).unwrap();
        s.end_batch(false).unwrap();
        assert!(s.doc_ids().unwrap().is_empty());
        assert_eq!(s.cursor().unwrap(), 0);
        s.begin_batch().unwrap();
        s.save_doc_changes(a, &doc, &state).unwrap();
        s.save_doc_changes(b, &doc, &state).unwrap();
        s.purge(a).unwrap();
        s.set_cursor(7).unwrap();
        s.end_batch(true).unwrap();
        drop(s);
        let s = Store::open(dir.path(), &key(1)).unwrap();
        assert_eq!(s.doc_ids().unwrap(), vec![b]);
        assert_eq!(s.cursor().unwrap(), 7);
    }

    #[test]
    fn documents_grow_by_chunks_then_compact_and_load_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), &key(1)).unwrap();
        let id = DocId(uuid::Uuid::from_u128(7));
        let mut doc = Automerge::new();
        let state = DocSyncState {
            pending: true,
            ..DocSyncState::default()
        };
        for i in 0..(COMPACT_AFTER + 3) {
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), "王阿婆的记录").unwrap();
            tx.commit();
            s.save_doc_changes(id, &doc, &state).unwrap();
            let loaded = Automerge::load(&s.load_doc(id).unwrap().unwrap()).unwrap();
            assert_eq!(loaded.get_heads(), doc.get_heads());
            // The heads a receipt is compared with, kept through chunks and compaction.
            assert_eq!(s.saved_heads(id).unwrap(), Some(doc.get_heads()));
        }
        // Compacted once on the way: fewer chunks than writes.
        assert!(s.chunk_count(id).unwrap() < COMPACT_AFTER);
        assert_eq!(s.pending_docs().unwrap(), vec![id]);
        assert_eq!(s.sync_state(id).unwrap().unwrap(), state);
        // Nothing readable in the file.
        drop(s);
        let raw = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let needle = "王阿婆".as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        let mut s = Store::open(dir.path(), &key(1)).unwrap();
        // With a summarizer, each write stores the summary in its transaction; a
        // document it cannot summarise loses its old summary.
        s.set_summarizer(|d, _| d.get(ROOT, "k0").ok().flatten().map(|_| b"has k0".to_vec()));
        assert_eq!(s.summary(id).unwrap(), None);
        s.save_doc_changes(id, &doc, &state).unwrap();
        assert_eq!(s.summary(id).unwrap().as_deref(), Some(&b"has k0"[..]));
        let mut tx = doc.transaction();
        tx.delete(ROOT, "k0").unwrap();
        tx.commit();
        s.save_doc_changes(id, &doc, &state).unwrap();
        assert_eq!(s.summary(id).unwrap(), None);
        s.purge(id).unwrap();
        assert!(s.load_doc(id).unwrap().is_none());
        assert_eq!(s.saved_heads(id).unwrap(), None);
        assert!(s.doc_ids().unwrap().is_empty());
    }
}
