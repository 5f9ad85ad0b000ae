//! A revoked phone's unsynced changes, sealed for the server.
//!
//! Revoking a device deletes the residents' data from the phone at its next contact,
//! but nothing written on a phone may be deleted without a person's decision. So the
//! phone first seals what the server never receipted (local changes and refused
//! uploads still awaiting a decision) under the device's export key, which only the
//! server holds besides the phone, and keeps that sealed export. Enrolled again, the
//! phone hands it to the server, which opens it with the old device's key and puts each
//! batch in quarantine under the old device, for a coordinator to accept or dismiss.
//!
//! ```text
//! magic "LNEX" | version u8 = 1 | device id (16 bytes) | nonce (24 bytes) |
//! XChaCha20-Poly1305(postcard(Export)) with the first 21 bytes as associated data
//! ```
//! Sans-I/O: the host supplies the nonce (random) and looks up the key.

use super::envelope::Bytes;
use crate::ids::{DeviceId, DocId, Timestamp, UserId};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

const MAGIC: [u8; 4] = *b"LNEX";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 16;
const NONCE: usize = 24;

/// What a revoked phone had not handed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The revoked device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// When the phone sealed it (its clock).
    pub made_at: Timestamp,
    /// Per document, the changes the server never receipted.
    pub batches: Vec<ExportBatch>,
}

/// One document's unsynced changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBatch {
    /// Which document.
    pub doc: DocId,
    /// Raw Automerge changes, in causal order.
    pub changes: Vec<Bytes>,
}

/// Why bytes are not an export this key opens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Not a Linli export (too short, wrong magic or version).
    #[error("not a Linli export of a version this build reads")]
    NotAnExport,
    /// The device it names is unknown, or has no export key.
    #[error("the export names device {0}, which has no export key here")]
    UnknownDevice(DeviceId),
    /// It does not open with the device's key, or its contents do not decode.
    #[error("the export does not open: it is damaged or not this server's")]
    Damaged,
    /// The key is not 32 bytes.
    #[error("an export key is 32 bytes")]
    BadKey,
}

impl Export {
    /// Seals the export under `key` (the device's export key) with `nonce`, which must
    /// be random.
    pub fn seal(&self, key: &[u8], nonce: [u8; NONCE]) -> Result<Vec<u8>, ExportError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| ExportError::BadKey)?;
        let mut out = Vec::with_capacity(HEADER + NONCE + 64);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.device.0.as_bytes());
        let plain = postcard::to_stdvec(self).map_err(|_| ExportError::Damaged)?;
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &out[..HEADER],
                },
            )
            .map_err(|_| ExportError::Damaged)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The device an export names, read from its clear header.
    pub fn device_of(bytes: &[u8]) -> Result<DeviceId, ExportError> {
        if bytes.len() < HEADER + NONCE || bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(ExportError::NotAnExport);
        }
        let id = uuid::Uuid::from_slice(&bytes[5..HEADER]).map_err(|_| ExportError::NotAnExport)?;
        Ok(DeviceId(id))
    }

    /// Opens an export with its device's key, found by `key_of`. Never panics.
    pub fn open(
        bytes: &[u8],
        key_of: impl FnOnce(DeviceId) -> Option<Vec<u8>>,
    ) -> Result<Export, ExportError> {
        let device = Self::device_of(bytes)?;
        let key = key_of(device).ok_or(ExportError::UnknownDevice(device))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| ExportError::BadKey)?;
        let (header, rest) = bytes.split_at(HEADER);
        let (nonce, body) = rest.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| ExportError::NotAnExport)?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: header,
                },
            )
            .map_err(|_| ExportError::Damaged)?;
        let export: Export = postcard::from_bytes(&plain).map_err(|_| ExportError::Damaged)?;
        // The header is authenticated, but the device inside must say the same.
        if export.device != device {
            return Err(ExportError::Damaged);
        }
        Ok(export)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> Export {
        Export {
            device: DeviceId(uuid::Uuid::from_u128(7)),
            user: UserId(uuid::Uuid::from_u128(8)),
            made_at: 1_764_000_000_000,
            batches: vec![ExportBatch {
                doc: DocId(uuid::Uuid::from_u128(9)),
                changes: vec![Bytes(vec![1, 2, 3])],
            }],
        }
    }

    #[test]
    fn an_export_opens_only_with_its_devices_key_and_never_panics() {
        let key = [5u8; 32];
        let sealed = export().seal(&key, [1; 24]).unwrap();
        assert_eq!(Export::device_of(&sealed).unwrap(), export().device);
        let opened = Export::open(&sealed, |d| (d == export().device).then(|| key.to_vec()));
        assert_eq!(opened.unwrap(), export());
        assert_eq!(
            Export::open(&sealed, |_| Some(vec![6; 32])),
            Err(ExportError::Damaged)
        );
        assert_eq!(
            Export::open(&sealed, |_| None),
            Err(ExportError::UnknownDevice(export().device))
        );
        // The device in the clear header is authenticated: another device's key
        // lookup cannot be steered to open it.
        let mut moved = sealed.clone();
        moved[5] ^= 1;
        assert!(Export::open(&moved, |_| Some(key.to_vec())).is_err());
        for len in 0..sealed.len() {
            assert!(Export::open(&sealed[..len], |_| Some(key.to_vec())).is_err());
        }
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x40;
            assert!(
                Export::open(&flipped, |_| Some(key.to_vec())).is_err(),
                "{i}"
            );
        }
        assert_eq!(export().seal(&[1; 31], [0; 24]), Err(ExportError::BadKey));
    }
}
