//! The master key (`FLOWGATE_MASTER_KEY`): 32 bytes from which every other secret key is
//! derived by label, so one secret protects key digests, audit content hashes and stored
//! credentials, and each use gets an independent key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key is not valid base64")]
    Encoding,
    #[error("master key decodes to {actual} bytes, expected 32")]
    Length { actual: usize },
}

#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        Self(crate::random_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| MasterKeyError::Encoding)?;
        let actual = bytes.len();
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| MasterKeyError::Length { actual })?;
        Ok(Self(array))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Derives an independent 32-byte key for one purpose (HMAC-SHA-256 of the label).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"flowgate/v1/");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap_or_else(|_| unreachable!());
        assert_eq!(key.derive("a"), again.derive("a"));
        assert_eq!(
            MasterKey::from_base64("not base64!").err(),
            Some(MasterKeyError::Encoding)
        );
        assert_eq!(
            MasterKey::from_base64("AAAA").err(),
            Some(MasterKeyError::Length { actual: 3 })
        );
    }

    #[test]
    fn labels_give_independent_keys() {
        let key = MasterKey::generate();
        assert_ne!(key.derive("key-hash"), key.derive("audit"));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
