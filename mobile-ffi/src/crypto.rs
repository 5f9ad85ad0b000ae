//! Encryption at rest: XChaCha20-Poly1305 with a random 24-byte nonce per value, and
//! associated data naming the row a value belongs to, so a value copied into another
//! row (another resident's, say) fails to open instead of being read as that row's.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE: usize = 24;

/// The store's cipher.
pub(crate) struct Cipher(XChaCha20Poly1305);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

/// Sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CryptoError {
    /// The value does not open with this key (wrong key, damaged or moved value).
    #[error("a stored value does not decrypt")]
    Open,
    /// No randomness for a nonce.
    #[error("no random source: {0}")]
    Random(String),
}

impl Cipher {
    /// A cipher over a 32-byte key; `None` for any other length.
    pub(crate) fn new(key: &[u8]) -> Option<Cipher> {
        XChaCha20Poly1305::new_from_slice(key).ok().map(Cipher)
    }

    /// `nonce || ciphertext+tag` of `plain`, bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let sealed = self
            .0
            .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Cipher::seal`] made with the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        self.0
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad })
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_with_their_key_and_their_row() {
        let c = Cipher::new(&[7; 32]).unwrap();
        let sealed = c.seal(b"docs/1", b"secret").unwrap();
        assert_eq!(c.open(b"docs/1", &sealed).unwrap(), b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert!(c.open(b"docs/2", &sealed).is_err());
        assert!(
            Cipher::new(&[8; 32])
                .unwrap()
                .open(b"docs/1", &sealed)
                .is_err()
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(c.open(b"docs/1", &flipped).is_err());
        assert!(c.open(b"docs/1", &sealed[..10]).is_err());
        assert!(Cipher::new(&[0; 31]).is_none());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, c.seal(b"docs/1", b"secret").unwrap());
    }
}
