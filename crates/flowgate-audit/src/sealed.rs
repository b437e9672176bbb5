//! Kept content (`AUDIT_HASH_PROMPTS=false`): the normalised request or response text
//! encrypted under the tenant's data key, in a record's `encrypted_content`.
//!
//! The data key is 256 random bits per tenant, kept by the gateway sealed under the master
//! key; deleting it erases every content sealed under it (the log keeps the ciphertext,
//! which the Merkle tree commits to, so the log still verifies). Each text is sealed
//! with AES-256-GCM under a fresh random 96-bit nonce, bound (associated data) to the record
//! it belongs to (`<request_id>/<kind>`): a ciphertext copied into another record does not
//! open. Stored form: `fgac1.<base64 nonce>.<base64 ciphertext>`. Anyone holding the master
//! key can read kept content (`flowgate audit show-content`); the log itself only commits to
//! the ciphertext. Leaves out where the master key lives.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::content::{EntropyError, normalize, random_bytes};

const VERSION: &str = "fgac1";
const AAD_PREFIX: &[u8] = b"flowgate-audit-content/v1\0";

/// Why kept content cannot be opened. Says nothing about which part failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("kept content is malformed (not `{VERSION}`)")]
    Malformed,
    #[error(
        "kept content cannot be opened (wrong master key, another record's content, or tampered)"
    )]
    Open,
    #[error("content not kept: {0}")]
    Entropy(#[from] EntropyError),
    #[error("content not kept: too long to encrypt")]
    TooLong,
}

/// One tenant's key for kept content. `Debug` hides it and the bytes are wiped on drop.
#[derive(Clone)]
pub struct TenantDataKey([u8; 32]);

impl fmt::Debug for TenantDataKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("TenantDataKey(..)")
    }
}

impl Drop for TenantDataKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// The associated data binding a sealed text to its record.
fn aad(request_id: &str, kind: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + request_id.len() + kind.len() + 1);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(request_id.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(kind.as_bytes());
    aad
}

impl TenantDataKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`EntropyError`].
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(Self)
    }

    /// Wraps 32 secret bytes (a stored key, unsealed).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, to seal for storage. Handle as a secret.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }

    /// Encrypts the normalised `text` for the record of `request_id` and `kind`
    /// (`request`/`completion`).
    ///
    /// # Errors
    /// `SealError::Entropy` when no nonce can be drawn, `TooLong` beyond GCM's limit.
    pub fn seal(&self, request_id: &str, kind: &str, text: &str) -> Result<String, SealError> {
        let nonce: [u8; 12] = random_bytes()?;
        let aad = aad(request_id, kind);
        let text = normalize(text);
        let payload = Payload {
            msg: text.as_bytes(),
            aad: &aad,
        };
        let ciphertext = self
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| SealError::TooLong)?;
        Ok(format!(
            "{VERSION}.{}.{}",
            STANDARD.encode(nonce),
            STANDARD.encode(ciphertext)
        ))
    }

    /// Decrypts what `seal` made for the same record.
    ///
    /// # Errors
    /// [`SealError`].
    pub fn open(&self, request_id: &str, kind: &str, sealed: &str) -> Result<String, SealError> {
        let mut parts = sealed.trim().split('.');
        let (Some(VERSION), Some(nonce), Some(data), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let decode = |part: &str| STANDARD.decode(part).map_err(|_| SealError::Malformed);
        let nonce = decode(nonce)?;
        let data = decode(data)?;
        let nonce = Nonce::try_from(&nonce[..]).map_err(|_| SealError::Malformed)?;
        let aad = aad(request_id, kind);
        let plain = self
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: &data,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_content_opens_for_its_record_only() {
        let key = TenantDataKey::from_bytes([7; 32]);
        let sealed = key
            .seal("req-1", "request", " My card is 4111 1111 1111 1111\r\n")
            .expect("seal");
        assert!(sealed.starts_with("fgac1."));
        assert!(!sealed.contains("4111"));
        assert_eq!(
            key.open("req-1", "request", &sealed).as_deref(),
            Ok("My card is 4111 1111 1111 1111"),
            "the normalised text comes back"
        );
        // Another record, another kind or another key: it does not open.
        assert_eq!(key.open("req-2", "request", &sealed), Err(SealError::Open));
        assert_eq!(
            key.open("req-1", "completion", &sealed),
            Err(SealError::Open)
        );
        let other = TenantDataKey::generate().expect("entropy");
        assert_ne!(other.to_bytes(), key.to_bytes());
        assert_eq!(
            other.open("req-1", "request", &sealed),
            Err(SealError::Open)
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce_and_tampering_is_detected() {
        let key = TenantDataKey::from_bytes([1; 32]);
        let first = key.seal("r", "request", "hello").expect("seal");
        let second = key.seal("r", "request", "hello").expect("seal");
        assert_ne!(first, second);
        let mut parts: Vec<String> = first.split('.').map(str::to_owned).collect();
        let mut data = STANDARD.decode(&parts[2]).expect("base64");
        data[0] ^= 1;
        parts[2] = STANDARD.encode(data);
        assert_eq!(
            key.open("r", "request", &parts.join(".")),
            Err(SealError::Open)
        );
        assert_eq!(
            key.open("r", "request", "fgac1.x"),
            Err(SealError::Malformed)
        );
        assert_eq!(
            key.open("r", "request", "plain text"),
            Err(SealError::Malformed)
        );
    }
}
