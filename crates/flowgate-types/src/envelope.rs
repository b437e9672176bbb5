//! Envelope encryption of stored secrets (provider credentials) with AES-256-GCM.
//!
//! Every secret gets a fresh random 256-bit data key (DEK). The secret is encrypted under the
//! DEK, and the DEK is encrypted ("wrapped") under a key-encryption key (KEK) derived from the
//! master key with `MasterKey::derive(label)`. Both encryptions use a random 96-bit nonce and
//! the same associated data, `flowgate-envelope/v1` ‖ NUL ‖ context, where the context names
//! what the secret belongs to (`provider:openai`): a row copied onto another provider, or a
//! ciphertext from a future format version, fails to open instead of decrypting.
//!
//! Stored form (ASCII, base64 parts): `fgenc1.<wrap nonce>.<wrapped DEK>.<nonce>.<ciphertext>`.
//! Re-encrypting under a new master key (`reseal`) opens with the old KEK and seals with a
//! fresh DEK under the new one. Leaves out storage and the choice of labels and contexts.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::MasterKey;

/// Format tag of the stored form; also part of the associated data.
const VERSION: &str = "fgenc1";
const AAD_PREFIX: &[u8] = b"flowgate-envelope/v1\0";

/// Why a sealed secret cannot be opened. Deliberately says nothing about which part failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("sealed secret is malformed (not a `{VERSION}` envelope)")]
    Malformed,
    #[error("sealed secret cannot be opened (wrong master key, wrong context or tampered)")]
    Open,
}

/// Seals and opens secrets under a KEK derived from the master key for one purpose.
#[derive(Clone)]
pub struct Envelope {
    kek: [u8; 32],
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope(<key>)")
    }
}

fn aad(context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + context.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(context.as_bytes());
    aad
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    #[expect(
        clippy::expect_used,
        reason = "a [u8; 32] is always a valid AES-256 key"
    )]
    Aes256Gcm::new_from_slice(key).expect("32-byte key")
}

fn encrypt(key: &[u8; 32], nonce: &[u8; 12], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    #[expect(clippy::expect_used, reason = "a 12-byte slice is always a GCM nonce")]
    let nonce = Nonce::try_from(&nonce[..]).expect("12-byte nonce");
    #[expect(
        clippy::expect_used,
        reason = "GCM encryption fails only beyond 64 GiB of plaintext"
    )]
    cipher(key)
        .encrypt(&nonce, Payload { msg, aad })
        .expect("secret far below the GCM length limit")
}

fn decrypt(
    key: &[u8; 32],
    nonce: &[u8],
    data: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let nonce = Nonce::try_from(nonce).map_err(|_| EnvelopeError::Malformed)?;
    cipher(key)
        .decrypt(&nonce, Payload { msg: data, aad })
        .map_err(|_| EnvelopeError::Open)
}

impl Envelope {
    /// The envelope whose KEK is `master_key.derive(label)`.
    pub fn new(master_key: &MasterKey, label: &str) -> Self {
        Self {
            kek: master_key.derive(label),
        }
    }

    /// Encrypts `secret` under a fresh DEK bound to `context`.
    pub fn seal(&self, context: &str, secret: &[u8]) -> String {
        let aad = aad(context);
        let dek: [u8; 32] = crate::random_bytes();
        let wrap_nonce: [u8; 12] = crate::random_bytes();
        let data_nonce: [u8; 12] = crate::random_bytes();
        let wrapped = encrypt(&self.kek, &wrap_nonce, &dek, &aad);
        let ciphertext = encrypt(&dek, &data_nonce, secret, &aad);
        format!(
            "{VERSION}.{}.{}.{}.{}",
            STANDARD.encode(wrap_nonce),
            STANDARD.encode(wrapped),
            STANDARD.encode(data_nonce),
            STANDARD.encode(ciphertext)
        )
    }

    /// Decrypts a value made by `seal` with the same KEK and context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, EnvelopeError> {
        let mut parts = sealed.trim().split('.');
        let (Some(VERSION), Some(wrap_nonce), Some(wrapped), Some(data_nonce), Some(data), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(EnvelopeError::Malformed);
        };
        let decode = |part: &str| STANDARD.decode(part).map_err(|_| EnvelopeError::Malformed);
        let aad = aad(context);
        let dek = decrypt(&self.kek, &decode(wrap_nonce)?, &decode(wrapped)?, &aad)?;
        let dek: [u8; 32] = dek.try_into().map_err(|_| EnvelopeError::Open)?;
        decrypt(&dek, &decode(data_nonce)?, &decode(data)?, &aad)
    }

    /// Opens `sealed` with this envelope and seals the secret again under `new` (fresh DEK).
    pub fn reseal(&self, new: &Self, context: &str, sealed: &str) -> Result<String, EnvelopeError> {
        let secret = self.open(context, sealed)?;
        Ok(new.seal(context, &secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope::new(&MasterKey::generate(), "test-kek")
    }

    #[test]
    fn round_trip_with_fresh_randomness_per_seal() {
        let envelope = envelope();
        let sealed = envelope.seal("provider:openai", b"sk-live-123");
        assert!(sealed.starts_with("fgenc1."));
        assert!(!sealed.contains("sk-live"));
        let again = envelope.seal("provider:openai", b"sk-live-123");
        assert_ne!(sealed, again, "fresh DEK and nonces per seal");
        let parts: Vec<&str> = sealed.split('.').collect();
        let other: Vec<&str> = again.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert_ne!(parts[2], other[2], "a different wrapped DEK");
        assert_eq!(
            envelope.open("provider:openai", &sealed),
            Ok(b"sk-live-123".to_vec())
        );
        assert_eq!(
            envelope.open("provider:openai", &envelope.seal("provider:openai", b"")),
            Ok(Vec::new())
        );
    }

    #[test]
    fn wrong_master_key_or_label_fails() {
        let master = MasterKey::generate();
        let sealed = Envelope::new(&master, "a").seal("provider:x", b"secret");
        assert_eq!(
            Envelope::new(&MasterKey::generate(), "a").open("provider:x", &sealed),
            Err(EnvelopeError::Open)
        );
        assert_eq!(
            Envelope::new(&master, "b").open("provider:x", &sealed),
            Err(EnvelopeError::Open)
        );
        assert_eq!(
            Envelope::new(&master, "a").open("provider:x", &sealed),
            Ok(b"secret".to_vec())
        );
    }

    #[test]
    fn context_is_bound() {
        let envelope = envelope();
        let sealed = envelope.seal("provider:openai", b"secret");
        assert_eq!(
            envelope.open("provider:anthropic", &sealed),
            Err(EnvelopeError::Open)
        );
    }

    #[test]
    fn tampering_with_any_part_is_detected() {
        let envelope = envelope();
        let sealed = envelope.seal("provider:openai", b"a longer secret value");
        let parts: Vec<&str> = sealed.split('.').collect();
        for index in 1..parts.len() {
            let mut bytes = STANDARD
                .decode(parts[index])
                .unwrap_or_else(|err| panic!("part {index}: {err}"));
            for position in [0, bytes.len() - 1] {
                let mut flipped = bytes.clone();
                flipped[position] ^= 0x01;
                let mut tampered = parts.clone();
                let encoded = STANDARD.encode(&flipped);
                tampered[index] = &encoded;
                assert_eq!(
                    envelope.open("provider:openai", &tampered.join(".")),
                    Err(EnvelopeError::Open),
                    "part {index} byte {position}"
                );
            }
            bytes.truncate(bytes.len() - 1);
            let mut truncated = parts.clone();
            let encoded = STANDARD.encode(&bytes);
            truncated[index] = &encoded;
            assert!(
                envelope
                    .open("provider:openai", &truncated.join("."))
                    .is_err()
            );
        }
        // Swapping the wrapped DEK of another secret in fails too.
        let other = envelope.seal("provider:openai", b"other");
        let other_parts: Vec<&str> = other.split('.').collect();
        let mut swapped = parts.clone();
        swapped[2] = other_parts[2];
        assert_eq!(
            envelope.open("provider:openai", &swapped.join(".")),
            Err(EnvelopeError::Open)
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let envelope = envelope();
        for bad in [
            "",
            "fgenc1",
            "fgenc2.AA.AA.AA.AA",
            "fgenc1.!!.AA.AA.AA",
            "fgenc1.AA.AA.AA.AA.AA",
            "sk-plain",
        ] {
            assert!(envelope.open("provider:x", bad).is_err(), "`{bad}`");
        }
    }

    #[test]
    fn reseal_moves_to_the_new_key() {
        let old = envelope();
        let new = envelope();
        let sealed = old.seal("provider:x", b"secret");
        let resealed = old
            .reseal(&new, "provider:x", &sealed)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(new.open("provider:x", &resealed), Ok(b"secret".to_vec()));
        assert_eq!(old.open("provider:x", &resealed), Err(EnvelopeError::Open));
        assert!(new.reseal(&old, "provider:x", &sealed).is_err());
    }
}
