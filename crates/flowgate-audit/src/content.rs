//! Keyed content hashing: per-tenant HMAC-SHA-256 keys derived from one master key, the
//! normalisation applied before hashing, and [`prove_content`], which shows that a given
//! text is the content a record's hash commits to (`flowgate audit prove-content`).
//!
//! Keyed hashes keep prompts out of the log while still letting someone who holds the text
//! and the tenant key prove a match; without the key, the hash reveals nothing guessable.
//! Leaves out encrypting kept content (the gateway does that with its data keys) and where
//! the master key is stored.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization as _;

use crate::record::AuditRecord;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation label for tenant key derivation (version 1).
const DERIVATION_LABEL: &[u8] = b"flowgate/audit/content-hash/v1\0";

/// The master key from which every tenant's content key is derived. `Debug` hides it and
/// the bytes are wiped on drop.
#[derive(Clone)]
pub struct ContentMasterKey([u8; 32]);

/// The operating system's random source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("random source failed: {message}")]
pub struct EntropyError {
    /// The OS error text.
    pub message: String,
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| EntropyError {
        message: error.to_string(),
    })?;
    Ok(bytes)
}

impl ContentMasterKey {
    /// Generates a fresh master key from the operating system's random source (first start).
    ///
    /// # Errors
    /// [`EntropyError`].
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(Self)
    }

    /// The secret bytes, for storing the key. Handle as a secret.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Wraps 32 secret bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Derives the tenant's key: `HMAC-SHA-256(master, label || tenant_id)`. Cache the result
    /// per tenant; derivation costs two HMAC passes.
    #[must_use]
    pub fn tenant_key(&self, tenant_id: &str) -> TenantContentKey {
        let mut mac = new_mac(&self.0);
        mac.update(DERIVATION_LABEL);
        mac.update(tenant_id.as_bytes());
        TenantContentKey(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for ContentMasterKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ContentMasterKey(..)")
    }
}

impl Drop for ContentMasterKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// One tenant's content hashing key. `Debug` hides it and the bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantContentKey([u8; 32]);

impl fmt::Debug for TenantContentKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("TenantContentKey(..)")
    }
}

impl Drop for TenantContentKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

fn new_mac(key: &[u8; 32]) -> HmacSha256 {
    #[expect(clippy::expect_used, reason = "HMAC accepts keys of every length")]
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Normalises content before hashing: Unicode NFC, CRLF and lone CR become LF, and
/// surrounding whitespace is trimmed. Borrows when the text is already normal.
#[must_use]
pub fn normalize(text: &str) -> Cow<'_, str> {
    let trimmed = text.trim();
    let needs_newline_fix = trimmed.contains('\r');
    let needs_nfc = !trimmed.is_ascii() && !unicode_normalization::is_nfc(trimmed);
    if !needs_newline_fix && !needs_nfc {
        return Cow::Borrowed(trimmed);
    }
    let unified = if needs_newline_fix {
        Cow::Owned(trimmed.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(trimmed)
    };
    if needs_nfc {
        Cow::Owned(unified.nfc().collect())
    } else {
        unified
    }
}

impl TenantContentKey {
    /// The raw MAC of the normalised text.
    #[must_use]
    pub fn mac(&self, text: &str) -> [u8; 32] {
        let mut mac = new_mac(&self.0);
        mac.update(normalize(text).as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The lowercase hex MAC of the normalised text, as stored in `request_hash` and
    /// `response_hash`.
    #[must_use]
    pub fn hash_hex(&self, text: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mac = self.mac(text);
        let mut out = String::with_capacity(64);
        for byte in mac {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Whether `text` matches the hex MAC `expected_hex` (constant-time comparison).
    #[must_use]
    pub fn matches(&self, text: &str, expected_hex: &str) -> bool {
        let Some(expected) = decode_hex(expected_hex) else {
            return false;
        };
        let mut mac = new_mac(&self.0);
        mac.update(normalize(text).as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *slot = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// Which of a record's content hashes matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMatch {
    /// The text is the request content.
    Request,
    /// The text is the response content.
    Response,
}

/// Shows which content hash of `record`, if any, `text` matches under `tenant_key`.
#[must_use]
pub fn match_content(
    text: &str,
    tenant_key: &TenantContentKey,
    record: &AuditRecord,
) -> Option<ContentMatch> {
    if record
        .request_hash
        .as_deref()
        .is_some_and(|hash| tenant_key.matches(text, hash))
    {
        return Some(ContentMatch::Request);
    }
    if record
        .response_hash
        .as_deref()
        .is_some_and(|hash| tenant_key.matches(text, hash))
    {
        return Some(ContentMatch::Response);
    }
    None
}

/// Whether `text` is the request or response content `record` commits to.
#[must_use]
pub fn prove_content(text: &str, tenant_key: &TenantContentKey, record: &AuditRecord) -> bool {
    match_content(text, tenant_key, record).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn master() -> ContentMasterKey {
        ContentMasterKey::from_bytes([42; 32])
    }

    #[test]
    fn normalisation_unifies_equivalent_text() {
        assert_eq!(normalize("  hello\r\nworld\r "), "hello\nworld");
        assert!(matches!(normalize("plain"), Cow::Borrowed("plain")));
        // "é" as e + combining acute becomes the precomposed form.
        assert_eq!(normalize("e\u{301}"), "\u{e9}");
    }

    #[test]
    fn keys_are_per_tenant_and_hashes_match_normalised_text() {
        let acme = master().tenant_key("acme");
        let other = master().tenant_key("globex");
        assert_ne!(acme, other);
        let hash = acme.hash_hex("What is 2+2?\r\n");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, acme.hash_hex("What is 2+2?"));
        assert_ne!(hash, other.hash_hex("What is 2+2?"));
        assert!(acme.matches("What is 2+2?", &hash));
        assert!(!acme.matches("What is 2+3?", &hash));
        assert!(!acme.matches("What is 2+2?", "zz"));
        assert!(!format!("{acme:?}").contains("42"));
    }

    #[test]
    fn generated_master_keys_differ_and_round_trip() {
        let first = ContentMasterKey::generate().expect("OS entropy");
        let second = ContentMasterKey::generate().expect("OS entropy");
        assert_ne!(first.to_bytes(), second.to_bytes());
        let again = ContentMasterKey::from_bytes(first.to_bytes());
        assert_eq!(again.tenant_key("t"), first.tenant_key("t"));
    }

    #[test]
    fn prove_content_against_a_record() {
        let key = master().tenant_key("acme");
        let mut record = sample();
        record.request_hash = Some(key.hash_hex("the prompt"));
        record.response_hash = Some(key.hash_hex("the answer"));
        assert!(prove_content("the prompt", &key, &record));
        assert_eq!(
            match_content("the answer", &key, &record),
            Some(ContentMatch::Response)
        );
        assert!(!prove_content("another prompt", &key, &record));
        assert!(!prove_content(
            "the prompt",
            &master().tenant_key("globex"),
            &record
        ));
    }
}
